"""The precompute job's settings: environment variables prefixed CLASSROOM_."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from services.common.client import ClientSettings
from services.common.secrets import read_secret, with_password


class PrecomputeSettings(ClientSettings):
    model_config = SettingsConfigDict(env_prefix="CLASSROOM_", extra="ignore")

    redis_url: str = Field("redis://localhost:6379/0", description="Redis for lesson pack export and import.")
    redis_password_file: Path | None = Field(None, description="A file holding Redis's password.")
    # The inference service's cache secret: packs are exported and imported signed with it.
    cache_secret: str | None = Field(None, description="The secret that signs cached trajectories.")
    cache_secret_file: Path | None = Field(None, description="A file holding the cache secret.")
    # The first start of the service downloads the model: rendering waits for it.
    wait_s: float = Field(1800.0, description="Seconds to wait for the service to be SERVING before rendering.")

    @model_validator(mode="after")
    def _password_from_file(self) -> PrecomputeSettings:
        self.redis_url = with_password(self.redis_url, read_secret(None, self.redis_password_file))
        self.cache_secret = read_secret(self.cache_secret, self.cache_secret_file)
        return self
