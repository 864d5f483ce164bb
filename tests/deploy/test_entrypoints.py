"""The containers' entry points, started as docker compose starts them but without Docker.

Each service runs its image's CMD (or the compose command) with the compose
environment; host names become loopback addresses, and the model is `tiny`.
Then one cached lesson and one live generation go end to end.
"""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
import yaml

from services.common.api import TEACHER_METADATA, bearer, pb, pb_grpc
from tests.frontend.conftest import LESSON_CATALOG, ROOT
from tests.integration.helpers import collect, request
from tests.support.redis_server import RedisServer
from tests.support.servers import free_port, stub_for, wait_until_serving


def image_command(dockerfile: str) -> list[str]:
    """The CMD of a Dockerfile in deploy/ (exec form, possibly over several lines)."""
    text = (ROOT / "deploy" / dockerfile).read_text().replace("\\\n", " ")
    line = next(line for line in text.splitlines() if line.startswith("CMD "))
    return local_python(json.loads(line.removeprefix("CMD ")))


def local_python(command: list[str]) -> list[str]:
    """The image's `python` is this environment's interpreter here."""
    return [sys.executable if part == "python" else part for part in command]


def environment(service: dict, hosts: dict[str, str], overrides: dict[str, str]) -> dict[str, str]:
    env = {}
    for name, value in service.get("environment", {}).items():
        value = os.path.expandvars(str(value)).replace("${", "")  # ${X:-default} -> default
        if ":-" in value:
            value = value.split(":-", 1)[1].rstrip("}")
        for host, address in hosts.items():
            value = value.replace(host, address)
        env[name] = value
    return os.environ | env | overrides


class Authorised:
    """A stub whose every call carries the bearer token."""

    def __init__(self, stub, token: str) -> None:
        self.stub, self.metadata = stub, bearer(token)

    def __getattr__(self, name):
        method = getattr(self.stub, name)
        return lambda message, **kwargs: method(message, metadata=self.metadata, **kwargs)


def test_containers_entry_points_serve_a_cached_and_a_live_generation(tiny_dir, tmp_path):
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    # The first start's job: the class's secrets, made in the (here: a temporary) secrets volume.
    secrets = tmp_path / "secrets"
    made = subprocess.run([*local_python(compose["secrets"]["command"][:-1]), str(secrets)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert made.returncode == 0, made.stderr
    password = (secrets / "service" / "redis_password").read_text().strip()
    redis_server = RedisServer(tmp_path / "redis", password=password).start()
    grpc_port, web_port = free_port(), free_port()
    # Host names become loopback addresses; the image's /app is this checkout; /secrets the service's own volume.
    hosts = {
        "redis:6379": f"127.0.0.1:{redis_server.port}",
        "inference:50051": f"127.0.0.1:{grpc_port}",
        "/app/": f"{ROOT}/",
        "/secrets/": f"{secrets}/service/",
    }
    common = {"CLASSROOM_MODEL": "tiny", "CLASSROOM_TINY_DIR": str(tiny_dir), "CLASSROOM_CATALOG": str(LESSON_CATALOG),
              "CLASSROOM_HOST": "127.0.0.1", "CLASSROOM_METRICS_PORT": "0"}  # fmt: skip
    processes = []

    def start(command, env, stdout=subprocess.DEVNULL):
        processes.append(subprocess.Popen(command, env=env, cwd=ROOT, start_new_session=True,
                                          stdout=stdout))  # fmt: skip
        return processes[-1]

    try:
        inference_env = environment(compose["inference"], hosts, common | {"CLASSROOM_GRPC_PORT": str(grpc_port)})
        assert inference_env["CLASSROOM_REDIS_URL"] == f"redis://127.0.0.1:{redis_server.port}/0"
        assert Path(inference_env["CLASSROOM_BLOCKLIST"]).is_file()  # moderation on, as in Docker
        inference = start(image_command("inference.Dockerfile"), inference_env)
        address = f"127.0.0.1:{grpc_port}"
        wait_until_serving(address, process=inference)

        precompute = local_python(compose["precompute"]["command"])
        result = subprocess.run(precompute, env=environment(compose["precompute"], hosts, common), cwd=ROOT,
                                capture_output=True, text=True, timeout=300)  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "failed 0" in result.stdout

        frontend = image_command("frontend.Dockerfile")
        frontend[frontend.index("8501")] = str(web_port)
        frontend_hosts = hosts | {"/secrets/": f"{secrets}/frontend/"}  # the front end's volume: token, class code
        log = (tmp_path / "frontend.log").open("w")
        start(frontend, environment(compose["frontend"], frontend_hosts, common), stdout=log)
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/_stcore/health", timeout=2) as response:
                    assert response.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, "the front end did not answer its health check"
                time.sleep(0.2)

        # Without the generated token the service answers nobody; with it, everything works.
        channel, stub = stub_for(address)
        with pytest.raises(grpc.RpcError) as refused:
            stub.ListLessons(pb.ListLessonsRequest())
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        token = (secrets / "service" / "api_token").read_text().strip()
        stub = Authorised(stub, token)
        lessons = stub.ListLessons(pb.ListLessonsRequest())
        assert {e.cache_state for e in lessons.entries} == {pb.CACHE_STATE_LESSON}
        cached = collect(stub.Generate(lessons.entries[0].request))
        assert cached.status.cache_hit
        live = collect(stub.Generate(request("a sailboat at dawn", seed=77, num_inference_steps=3, width=64,
                                             height=64)))  # fmt: skip
        assert live.status.source == pb.TRAJECTORY_SOURCE_COMPUTED and len(live.frames) == 3
        # The teacher code made at the first start opens the teacher's calls, read from the service's own folder.
        teacher_code = (secrets / "service" / "teacher_code").read_text().strip()
        teacher = pb_grpc.TeacherServiceStub(channel)
        with pytest.raises(grpc.RpcError):
            teacher.GetClassroom(pb.GetClassroomRequest(), metadata=(*bearer(token), (TEACHER_METADATA, "heron-7")))
        teacher.GetClassroom(pb.GetClassroomRequest(), metadata=(*bearer(token), (TEACHER_METADATA, teacher_code)))
        channel.close()
        # The class code made at the first start is in the front end's log, for the teacher to read out.
        class_code = (secrets / "frontend" / "class_code").read_text().strip()
        assert f"Class code for students: {class_code}" in (tmp_path / "frontend.log").read_text()
        assert (secrets / "frontend" / "teacher_code").read_text().strip() == teacher_code  # and the teacher's, too
        assert f"keep it from students): {teacher_code}\n" in (tmp_path / "frontend.log").read_text()
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        redis_server.stop()
