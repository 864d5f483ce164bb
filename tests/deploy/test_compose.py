"""docker-compose.yml: valid offline, and shaped the way a school's GPU server needs it."""

import shutil
import subprocess

import pytest
import yaml

from tests.frontend.conftest import ROOT

COMPOSE = ROOT / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_file_validates_offline():
    docker_compose = shutil.which("docker-compose")
    assert docker_compose, "Debian's docker-compose validates the file offline: run `make install`"
    result = subprocess.run([docker_compose, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_services_start_in_dependency_order_on_health(compose):
    services = compose["services"]
    assert set(services) == {"secrets", "redis", "inference", "frontend", "precompute"}
    for name, service in services.items():
        for needed, condition in service.get("depends_on", {}).items():
            if needed == "secrets":  # a one-shot job: the others wait for it to finish
                assert condition == {"condition": "service_completed_successfully"}, name
                continue
            assert condition == {"condition": "service_healthy"}, (name, needed)
            assert "healthcheck" in services[needed], f"{name} waits on {needed}, which has no health check"
    assert set(services["redis"]["depends_on"]) == {"secrets"}
    assert set(services["inference"]["depends_on"]) == {"redis"}
    assert set(services["frontend"]["depends_on"]) == {"inference"}
    assert set(services["precompute"]["depends_on"]) == {"inference"}
    assert services["precompute"]["restart"] == "no"


def test_inference_reserves_the_gpu_and_keeps_the_weights(compose):
    inference = compose["services"]["inference"]
    devices = inference["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert inference["healthcheck"]["test"] == ["CMD", "python", "-m", "services.inference", "health"]
    minutes = int(inference["healthcheck"]["start_period"].rstrip("m"))
    assert minutes >= 10  # long enough for the first download of the weights
    assert "hf-cache:/data" in inference["volumes"]
    assert inference["environment"]["CLASSROOM_REDIS_URL"] == "redis://redis:6379/0"


def test_redis_keeps_lessons_and_the_volumes_are_declared(compose):
    redis = compose["services"]["redis"]
    assert "./deploy/redis/redis.conf:/usr/local/etc/redis/redis.conf:ro" in redis["volumes"]
    assert "redis-data:/data" in redis["volumes"]
    assert set(compose["volumes"]) == {"hf-cache", "redis-data", "classroom-secrets"}
    config = (ROOT / "deploy" / "redis" / "redis.conf").read_text().split("\n")
    assert "maxmemory-policy volatile-lru" in config and "appendonly yes" in config


def test_frontend_on_8501_with_a_health_check(compose):
    frontend = compose["services"]["frontend"]
    assert frontend["ports"] == ["${CLASSROOM_FRONTEND_PORT:-8501}:8501"]
    assert "_stcore/health" in " ".join(frontend["healthcheck"]["test"])
    assert frontend["environment"]["CLASSROOM_INFERENCE_ADDR"] == "inference:50051"


def test_cpu_override_drops_the_gpu_and_runs_the_shapes_model():
    override = yaml.load((ROOT / "deploy" / "compose.cpu.yml").read_text(), Loader=_ResetLoader)
    assert override["services"]["inference"]["deploy"] == "!reset"
    environment = override["services"]["inference"]["environment"]
    assert environment["CLASSROOM_DEVICE"] == "cpu"
    assert environment["CLASSROOM_MODEL"] == "${CLASSROOM_MODEL:-shapes}"
    # The Shapes catalog renders in minutes on a CPU: the precompute job runs as on a GPU server.
    assert "precompute" not in override["services"]


def test_the_model_is_chosen_by_the_hardware_unless_set(compose):
    assert compose["services"]["inference"]["environment"]["CLASSROOM_MODEL"] == "${CLASSROOM_MODEL:-auto}"


def test_env_example_documents_every_variable_the_compose_file_reads():
    import re

    used = set(re.findall(r"\$\{(\w+)", COMPOSE.read_text()))
    documented = {line.split("=")[0] for line in (ROOT / ".env.example").read_text().splitlines() if "=" in line}
    assert used <= documented, used - documented


class _ResetLoader(yaml.SafeLoader):
    """Reads compose's `!reset` tag as the string "!reset"."""


_ResetLoader.add_constructor("!reset", lambda loader, node: "!reset")


def test_a_fresh_install_publishes_only_the_front_end(compose):
    services = compose["services"]
    published = {name: service["ports"] for name, service in services.items() if service.get("ports")}
    assert published == {"frontend": ["${CLASSROOM_FRONTEND_PORT:-8501}:8501"]}


def test_the_secrets_are_made_on_first_start_and_every_service_reads_its_own(compose):
    services = compose["services"]
    assert services["secrets"]["command"] == ["python", "-m", "services.inference", "make-secrets", "/secrets"]
    for name in ("redis", "inference", "frontend", "precompute"):
        assert "classroom-secrets:/secrets:ro" in services[name]["volumes"], name
    # Redis requires the password; the clients read it and the API token from the volume.
    assert "--requirepass" in " ".join(services["redis"]["command"])
    assert "/secrets/redis_password" in " ".join(services["redis"]["healthcheck"]["test"])
    for name in ("inference", "precompute"):
        assert services[name]["environment"]["CLASSROOM_REDIS_PASSWORD_FILE"] == "/secrets/redis_password"
        assert services[name]["environment"]["CLASSROOM_CACHE_SECRET_FILE"] == "/secrets/cache_secret"
    for name in ("inference", "frontend", "precompute"):
        assert services[name]["environment"]["CLASSROOM_API_TOKEN_FILE"] == "/secrets/api_token"
    # The service listens on the compose network, which it may only do with the token.
    assert services["inference"]["environment"]["CLASSROOM_HOST"] == "0.0.0.0"
