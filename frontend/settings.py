"""The front end's settings: environment variables prefixed CLASSROOM_."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.channels import TlsClientSettings


class FrontendSettings(TlsClientSettings):
    model_config = SettingsConfigDict(env_prefix="CLASSROOM_", extra="ignore")

    # A host:port, or dns:///name:port to spread over several inference servers.
    inference_addr: str = Field("localhost:50051", description="The inference service's gRPC address.")
    # When set, students give it (and a display name) before any lesson.
    class_code: str | None = Field(None, description="The class code students must enter; unset: no sign-in.")
    # Names this class to the service, when several classes share one server (each its own front end).
    class_name: str = Field("", description="This class's name, for per-class queue shares; empty: none.")
    # Opens the teacher's page (the inference service must have the same code).
    teacher_code: str | None = Field(None, description="The teacher code; unset: no teacher page.")
    api_token: str | None = Field(None, description="The inference service's API token, if it has one.")
    # Unary calls (model info, tokens, lessons) give up after this long.
    request_timeout_s: float = Field(30.0, description="Seconds before a quick call to the service gives up.")
