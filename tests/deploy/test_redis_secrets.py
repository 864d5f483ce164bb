"""Redis as compose starts it: the password from the file make-secrets wrote, never on a command line."""

import shutil
import subprocess
import time
from pathlib import Path

import pytest
import redis
import yaml

from services.common.secrets import REDIS_AUTH_CONF, ensure_secrets
from tests.frontend.conftest import ROOT
from tests.support.servers import free_port


@pytest.fixture(scope="module")
def protected_redis(tmp_path_factory):
    """redis-server with compose's command (the repository's redis.conf and the included password file)."""
    tmp_path = tmp_path_factory.mktemp("redis")
    secrets = tmp_path / "secrets"
    ensure_secrets(secrets)
    command = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["redis"]["command"]
    assert command[0] == "redis-server"
    paths = {
        "/usr/local/etc/redis/redis.conf": str(ROOT / "deploy" / "redis" / "redis.conf"),
        f"/secrets/{REDIS_AUTH_CONF}": str(secrets / "redis" / REDIS_AUTH_CONF),
    }
    port = free_port()
    process = subprocess.Popen(
        [shutil.which("redis-server"), *(paths.get(part, part) for part in command[1:]),
         "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path), "--appendonly", "no",
         "--maxmemory", "64mb"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    password = (secrets / "service" / "redis_password").read_text().strip()
    client = redis.Redis(port=port, password=password)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            assert time.monotonic() < deadline and process.poll() is None, "redis-server did not start"
            time.sleep(0.01)
    yield process, port, password, secrets
    client.shutdown(nosave=True)
    process.wait(10)


def test_redis_answers_only_with_the_password_and_no_command_line_shows_it(protected_redis):
    process, port, password, _ = protected_redis
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=port).ping()
    assert redis.Redis(port=port, password=password).ping()
    command_line = Path(f"/proc/{process.pid}/cmdline").read_bytes()
    assert password.encode() not in command_line  # what `ps` shows everyone on the host


def test_the_health_check_reads_the_password_from_the_same_file(protected_redis):
    _, port, _, secrets = protected_redis
    check = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["redis"]["healthcheck"]["test"]
    assert check[0] == "CMD-SHELL"
    script = check[1].replace("$$", "$").replace("/secrets/", f"{secrets}/redis/")
    script = script.replace("redis-cli ping", f"redis-cli -p {port} ping")
    assert subprocess.run(["sh", "-c", script], timeout=30).returncode == 0
    (secrets / "redis" / REDIS_AUTH_CONF).write_text("requirepass not-the-password\n")
    assert subprocess.run(["sh", "-c", script], timeout=30, capture_output=True).returncode != 0
