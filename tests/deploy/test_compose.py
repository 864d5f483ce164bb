"""docker-compose.yml: valid offline, and shaped the way a school's GPU server needs it."""

import shutil
import subprocess

import pytest
import yaml

from services.common.secrets import READERS, REDIS_AUTH_CONF
from tests.frontend.conftest import ROOT

COMPOSE = ROOT / "docker-compose.yml"
# Each reader's folder of make-secrets is a volume of its own (services/common/secrets.py).
SECRET_VOLUMES = {"classroom-secrets": "service", "frontend-secrets": "frontend", "redis-secrets": "redis"}


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
    assert set(services) == {"secrets", "redis", "inference", "shapes", "frontend", "precompute", "proxy"}
    for name, service in services.items():
        for needed, condition in service.get("depends_on", {}).items():
            if needed == "secrets":  # a one-shot job: the others wait for it to finish
                assert condition == {"condition": "service_completed_successfully"}, name
                continue
            assert condition == {"condition": "service_healthy"}, (name, needed)
            assert "healthcheck" in services[needed], f"{name} waits on {needed}, which has no health check"
    assert set(services["redis"]["depends_on"]) == {"secrets"}
    assert set(services["inference"]["depends_on"]) == {"redis"}
    assert set(services["shapes"]["depends_on"]) == {"redis"}
    assert set(services["frontend"]["depends_on"]) == {"inference"}
    assert set(services["precompute"]["depends_on"]) == {"inference"}
    assert set(services["proxy"]["depends_on"]) == {"frontend"}
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
    assert set(compose["volumes"]) == {"hf-cache", "redis-data", "caddy-data", "caddy-config", *SECRET_VOLUMES}
    config = (ROOT / "deploy" / "redis" / "redis.conf").read_text().split("\n")
    assert "maxmemory-policy volatile-lru" in config and "appendonly yes" in config


def test_frontend_on_8501_with_a_health_check(compose):
    frontend = compose["services"]["frontend"]
    assert "ports" not in frontend  # browsers reach it through the proxy only
    assert "_stcore/health" in " ".join(frontend["healthcheck"]["test"])
    assert frontend["environment"]["CLASSROOM_INFERENCE_ADDR"] == "inference:50051"


def test_shapes_runs_beside_the_gpu_s_model_for_lessons_9_and_10(compose):
    services = compose["services"]
    shapes = services["shapes"]
    assert shapes["environment"]["CLASSROOM_MODEL"] == "shapes" and shapes["environment"]["CLASSROOM_DEVICE"] == "cpu"
    assert "deploy" not in shapes and "ports" not in shapes  # no GPU, and reached on the compose network only
    assert shapes["environment"]["CLASSROOM_REDIS_URL"] == services["inference"]["environment"]["CLASSROOM_REDIS_URL"]
    assert shapes["healthcheck"]["test"] == services["inference"]["healthcheck"]["test"]
    assert services["frontend"]["environment"]["CLASSROOM_SHAPES_ADDR"] == "shapes:50051"


def test_cpu_override_drops_the_gpu_and_runs_the_shapes_model():
    override = yaml.load((ROOT / "deploy" / "compose.cpu.yml").read_text(), Loader=_ResetLoader)
    # The main service is Shapes: lessons 9 and 10 ask it, and none starts beside it.
    assert override["services"]["shapes"] == {"scale": 0}
    assert override["services"]["frontend"]["environment"]["CLASSROOM_SHAPES_ADDR"] == ""
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


def test_a_fresh_install_publishes_only_the_proxy(compose):
    services = compose["services"]
    published = {name: service["ports"] for name, service in services.items() if service.get("ports")}
    assert published == {"proxy": ["${CLASSROOM_HTTP_PORT:-80}:80", "${CLASSROOM_HTTPS_PORT:-443}:443"]}


def test_each_service_mounts_only_the_secrets_it_reads(compose):
    services = compose["services"]
    job = services["secrets"]
    assert job["command"] == ["python", "-m", "services.inference", "make-secrets", "/secrets"]
    assert job["user"] == "0:0" and job["network_mode"] == "none"  # root only to give each folder away
    assert sorted(job["volumes"]) == sorted(f"{volume}:/secrets/{folder}" for volume, folder in SECRET_VOLUMES.items())
    readers = {reader.folder: set(reader.files) for reader in READERS}
    mounted = {}
    for name in ("redis", "inference", "shapes", "frontend", "precompute"):
        volumes = [v for v in services[name]["volumes"] if v.split(":")[0] in SECRET_VOLUMES]
        assert len(volumes) == 1 and volumes[0].endswith(":/secrets:ro"), (name, volumes)
        mounted[name] = SECRET_VOLUMES[volumes[0].split(":")[0]]
        for variable, value in services[name].get("environment", {}).items():
            if variable.endswith("_FILE"):  # every secret a service is told to read is in its folder
                assert value.removeprefix("/secrets/") in readers[mounted[name]], (name, variable)
    assert mounted == {"redis": "redis", "inference": "service", "shapes": "service", "precompute": "service",
                       "frontend": "frontend"}  # fmt: skip
    assert "redis_password" not in readers["frontend"] and "cache_secret" not in readers["frontend"]
    frontend = services["frontend"]["environment"]
    assert frontend["CLASSROOM_CLASS_CODE_FILE"] == "/secrets/class_code"
    assert frontend["CLASSROOM_CLASS_CODE"] == "${CLASSROOM_CLASS_CODE:-}"  # an explicit code still wins
    for name in (
        "inference",
        "shapes",
        "frontend",
    ):  # the teacher code: made at the first start, each reader its own copy
        assert services[name]["environment"]["CLASSROOM_TEACHER_CODE_FILE"] == "/secrets/teacher_code"
        assert services[name]["environment"]["CLASSROOM_TEACHER_CODE"] == "${CLASSROOM_TEACHER_CODE:-}"
    assert "teacher_code" in readers["service"] and "teacher_code" in readers["frontend"]
    for name in ("inference", "shapes", "precompute"):
        assert services[name]["environment"]["CLASSROOM_REDIS_PASSWORD_FILE"] == "/secrets/redis_password"
        assert services[name]["environment"]["CLASSROOM_CACHE_SECRET_FILE"] == "/secrets/cache_secret"
    for name in ("inference", "shapes", "frontend", "precompute"):
        assert services[name]["environment"]["CLASSROOM_API_TOKEN_FILE"] == "/secrets/api_token"
    # The services listen on the compose network, which they may only do with the token.
    assert services["inference"]["environment"]["CLASSROOM_HOST"] == "0.0.0.0"
    assert services["shapes"]["environment"]["CLASSROOM_HOST"] == "0.0.0.0"


def test_redis_runs_as_its_own_user_with_the_password_off_its_command_line(compose):
    redis = compose["services"]["redis"]
    # The official image's entry point drops to its redis user only when the command starts with redis-server.
    assert redis["command"] == [
        "redis-server", "/usr/local/etc/redis/redis.conf", "--include", f"/secrets/{REDIS_AUTH_CONF}"
    ]  # fmt: skip
    assert "user" not in redis
    health = " ".join(redis["healthcheck"]["test"])
    assert "REDISCLI_AUTH=" in health and " -a " not in health  # not on redis-cli's command line either


def test_the_proxy_is_the_only_way_in_and_the_front_end_trusts_only_its_network(compose):
    services = compose["services"]
    proxy = services["proxy"]
    assert proxy["image"].startswith("caddy:")
    assert proxy["command"] == ["/bin/sh", "/etc/caddy/start.sh"]
    assert "./deploy/caddy:/etc/caddy:ro" in proxy["volumes"]
    assert "${CLASSROOM_HTTPS_CERT_DIR:-./deploy/certs}:/certs:ro" in proxy["volumes"]
    assert "caddy-data:/data" in proxy["volumes"]  # certificates survive restarts
    assert set(proxy["environment"]) == {"CLASSROOM_PUBLIC_NAME", "CLASSROOM_HTTPS_CERT", "CLASSROOM_HTTPS_KEY"}
    # Only the proxy and the front end are on the edge network, and that network is what the front end trusts.
    on_edge = {name for name, service in services.items() if "edge" in service.get("networks", [])}
    assert on_edge == {"proxy", "frontend"}
    assert proxy["networks"] == ["edge"] and set(services["frontend"]["networks"]) == {"default", "edge"}
    subnet = compose["networks"]["edge"]["ipam"]["config"][0]["subnet"]
    assert services["frontend"]["environment"]["CLASSROOM_TRUSTED_PROXIES"] == subnet
    assert (ROOT / "deploy" / "certs" / ".gitignore").read_text().splitlines()[1:] == ["*", "!.gitignore"]
