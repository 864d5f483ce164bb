"""Channels to the inference service: plain on a trusted network, TLS when a CA certificate is given."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
from pydantic import Field
from pydantic_settings import BaseSettings


class TlsClientSettings(BaseSettings):
    """How a client checks the inference service's certificate (CLASSROOM_TLS_CA, CLASSROOM_TLS_SERVER_NAME)."""

    tls_ca: Path | None = Field(
        None, description="CA certificate (PEM) the inference service's certificate is checked against; unset: no TLS."
    )
    tls_server_name: str | None = Field(
        None, description="The name the service's certificate must carry, when it differs from the address's host."
    )


def _tls_options(settings: TlsClientSettings) -> list[tuple[str, Any]]:
    return [("grpc.ssl_target_name_override", settings.tls_server_name)] if settings.tls_server_name else []


def open_channel(address: str, settings: TlsClientSettings, options: Sequence[tuple[str, Any]] = ()) -> grpc.Channel:
    """A blocking channel to `address`, over TLS when `settings.tls_ca` is set."""
    if settings.tls_ca is None:
        return grpc.insecure_channel(address, options=list(options))
    credentials = grpc.ssl_channel_credentials(root_certificates=settings.tls_ca.read_bytes())
    return grpc.secure_channel(address, credentials, options=[*options, *_tls_options(settings)])
