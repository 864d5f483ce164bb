"""The front end's settings: environment variables prefixed CLASSROOM_."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.client import ClientSettings


class FrontendSettings(ClientSettings):
    model_config = SettingsConfigDict(env_prefix="CLASSROOM_", extra="ignore")

    # When set, students give it (and a display name) before any lesson.
    class_code: str | None = Field(None, description="The class code students must enter; unset: no sign-in.")
    # Names this class to the service, when several classes share one server (each its own front end).
    class_name: str = Field("", description="This class's name, for per-class queue shares; empty: none.")
    # Opens the teacher's page (the inference service must have the same code).
    teacher_code: str | None = Field(None, description="The teacher code; unset: no teacher page.")
