"""The precompute job's settings: environment variables prefixed CLASSROOM_."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.channels import TlsClientSettings


class PrecomputeSettings(TlsClientSettings):
    model_config = SettingsConfigDict(env_prefix="CLASSROOM_", extra="ignore")

    inference_addr: str = Field("localhost:50051", description="The inference service's gRPC address.")
    api_token: str | None = Field(None, description="The inference service's API token, if it has one.")
    redis_url: str = Field("redis://localhost:6379/0", description="Redis for lesson pack export and import.")
    # The first start of the service downloads the model: rendering waits for it.
    wait_s: float = Field(1800.0, description="Seconds to wait for the service to be SERVING before rendering.")
