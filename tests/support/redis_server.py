"""A real redis-server process on loopback, started and stopped by the tests."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis

from services.common.secrets import with_password
from tests.support.servers import free_port


class RedisServer:
    """redis-server with no persistence, in a folder of its own; can be killed and restarted."""

    def __init__(self, folder: Path, port: int | None = None, password: str | None = None) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError("redis-server is not installed: run `make install` (apt-get install redis-server)")
        self.executable = executable
        self.folder = folder
        self.port = port or free_port()
        self.password = password
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL a client needs (with the password, when the server has one)."""
        return with_password(f"redis://127.0.0.1:{self.port}/0", self.password)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def start(self, timeout: float = 10.0) -> RedisServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [self.executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.folder),
             *(["--requirepass", self.password] if self.password else [])],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        with self.client() as client:
            while True:
                try:
                    client.ping()
                    return self
                except redis.ConnectionError:
                    if time.monotonic() > deadline or self.process.poll() is not None:
                        raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                    time.sleep(0.01)

    def kill(self) -> None:
        """Stop abruptly, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            with self.client() as client:
                client.shutdown(nosave=True)
        except redis.RedisError:
            pass
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.kill()
