"""The class's secrets: made on a server's first start, shared by its services through a private volume.

A fresh install must expose nothing a student could use: so the API token (who
may talk to the inference service), the Redis password and the cache secret
(which signs what the service stores) exist from the first start, without the
teacher choosing them. `python -m services.inference make-secrets DIR` writes
any that are missing; each service reads its own from `CLASSROOM_*_FILE`.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

SECRET_NAMES = ("api_token", "redis_password", "cache_secret")


def read_secret(value: str | None, path: Path | None) -> str | None:
    """A secret given directly, or else read from its file (stripped of its newline); None if neither."""
    if value:
        return value
    if path is None:
        return None
    text = path.read_text().strip()
    if not text:
        raise ValueError(f"the secret file {path} is empty")
    return text


def ensure_secrets(folder: Path) -> list[str]:
    """Write a fresh random value for each missing secret in `folder`; the names written."""
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for name in SECRET_NAMES:
        path = folder / name
        if path.exists():
            continue
        # Readable by the services that mount the volume (they run as other users); never published.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
        made.append(name)
    return made


def with_password(url: str, password: str | None) -> str:
    """A Redis URL with the password put in (unless it carries one already)."""
    if not url or not password:
        return url
    parts = urlsplit(url)
    if parts.password:
        return url
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f":{quote(password, safe='')}@{host}"))
