"""The front end's settings: environment variables prefixed CLASSROOM_."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from services.common.client import ClientSettings
from services.common.secrets import read_secret


class FrontendSettings(ClientSettings):
    model_config = SettingsConfigDict(env_prefix="CLASSROOM_", extra="ignore")

    # When set, students give it (and a display name) before any lesson.
    class_code: str | None = Field(None, description="The class code students must enter; unset: no sign-in.")
    # Compose and `make up` make one at the first start (make-secrets); CLASSROOM_CLASS_CODE still wins.
    class_code_file: Path | None = Field(None, description="A file holding the class code (the secrets folder).")
    # Names this class to the service, when several classes share one server (each its own front end).
    class_name: str = Field("", description="This class's name, for per-class queue shares; empty: none.")
    # Lessons 9 and 10 are about Shapes, the small model trained for this classroom: on a server whose
    # model is another (Stable Diffusion on a GPU), compose runs Shapes beside it, and they ask it there.
    shapes_addr: str = Field("", description="A service running Shapes, for lessons 9 and 10; empty: the main one.")
    # Opens the teacher's page (the inference service must have the same code).
    teacher_code: str | None = Field(None, description="The teacher code; unset: no teacher page.")
    # Made at the first start like the class code, but said only in the log; CLASSROOM_TEACHER_CODE still wins.
    teacher_code_file: Path | None = Field(None, description="A file holding the teacher code (the secrets folder).")
    # Only a connection from one of these may say who the browser is (X-Forwarded-For) and whether
    # it came over HTTPS (X-Forwarded-Proto): compose names its proxy's network, Kubernetes the
    # ingress's. Anyone else could write those headers themselves.
    trusted_proxies: Annotated[tuple[IPv4Network | IPv6Network, ...], NoDecode] = Field(
        (), description="Comma-separated networks of the reverse proxies in front (CIDR); empty: trust nobody."
    )

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _networks(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(ip_network(part.strip(), strict=False) for part in value.split(",") if part.strip())
        return value

    @model_validator(mode="after")
    def _codes_from_files(self) -> FrontendSettings:
        self.class_code = read_secret(self.class_code, self.class_code_file)
        self.teacher_code = read_secret(self.teacher_code, self.teacher_code_file)
        return self
