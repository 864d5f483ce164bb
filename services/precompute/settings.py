"""The precompute job's settings: environment variables prefixed CLASSROOM_."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.client import ClientSettings


class PrecomputeSettings(ClientSettings):
    model_config = SettingsConfigDict(env_prefix="CLASSROOM_", extra="ignore")

    redis_url: str = Field("redis://localhost:6379/0", description="Redis for lesson pack export and import.")
    # The first start of the service downloads the model: rendering waits for it.
    wait_s: float = Field(1800.0, description="Seconds to wait for the service to be SERVING before rendering.")
