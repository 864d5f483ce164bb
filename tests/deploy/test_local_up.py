"""`make up` (deploy/local-up.sh) as a teacher starts it: codes made and said, Redis behind a password.

Its model here is a folder other than Shapes (the tiny model's, as a GPU's Stable Diffusion would be):
so Shapes starts beside it for lessons 9 and 10, in the same class.
"""

import os
import subprocess
import time
from pathlib import Path

import pytest
import redis

from tests.frontend.conftest import ROOT
from tests.support.frontend import stop
from tests.support.servers import client_for, free_port, wait_until_serving


def test_make_up_makes_the_codes_and_starts_redis_with_a_password(tiny_dir, tmp_path):
    ports = {name: str(free_port()) for name in ("GRPC", "FRONTEND", "REDIS", "SHAPES")}
    env = os.environ | {
        "CLASSROOM_MODEL": str(tiny_dir),  # a model folder that is not Shapes
        "CLASSROOM_SHAPES_PORT": ports["SHAPES"],
        "CLASSROOM_GRPC_PORT": ports["GRPC"],
        "CLASSROOM_FRONTEND_PORT": ports["FRONTEND"],
        "CLASSROOM_REDIS_PORT": ports["REDIS"],
        "CLASSROOM_METRICS_PORT": "0",
        "CLASSROOM_RUN_DIR": str(tmp_path / "run"),
    }
    for name in ("CLASSROOM_REDIS_URL", "CLASSROOM_INFERENCE_ADDR", "CLASSROOM_CLASS_CODE", "CLASSROOM_CLASS_CODE_FILE",
                 "CLASSROOM_REDIS_PASSWORD_FILE", "CLASSROOM_CACHE_SECRET_FILE", "CLASSROOM_TEACHER_CODE",
                 "CLASSROOM_TEACHER_CODE_FILE", "CLASSROOM_SHAPES_ADDR"):  # fmt: skip
        env.pop(name, None)
    log_path = tmp_path / "stack.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(["bash", str(ROOT / "deploy" / "local-up.sh")], env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        try:
            # The front end says the class code as it starts, after the secrets and Redis.
            deadline = time.monotonic() + 120
            while not all(line in log_path.read_text() for line in ("Class code for students: ", "Teacher's page: ")):
                assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.1)
            secrets = tmp_path / "run" / "secrets"
            class_code = (secrets / "frontend" / "class_code").read_text().strip()
            assert f"Class code for students: {class_code}\n" in log_path.read_text()
            # The teacher code: the same in both readers' folders, said in the start message and the front end's log.
            teacher_code = (secrets / "frontend" / "teacher_code").read_text().strip()
            assert (secrets / "service" / "teacher_code").read_text().strip() == teacher_code
            assert len(teacher_code.split("-")) == 5 and teacher_code != class_code
            assert f", teacher code {teacher_code} (keep it from students)\n" in log_path.read_text()
            assert f"Teacher code (for the teacher's page; keep it from students): {teacher_code}\n" in (
                log_path.read_text()
            )
            password = (secrets / "service" / "redis_password").read_text().strip()
            while True:  # Redis starts in the background: wait until it answers at all
                try:
                    with pytest.raises(redis.AuthenticationError):
                        redis.Redis(port=int(ports["REDIS"])).ping()
                    break
                except redis.ConnectionError:
                    assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
                    time.sleep(0.05)
            assert redis.Redis(port=int(ports["REDIS"]), password=password).ping()
            for pid in _descendants(process.pid):
                assert password.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
            assert {oct(p.stat().st_mode & 0o777) for p in secrets.rglob("*")} == {"0o700", "0o600"}
            # The service refuses the shipped blocklist's words, as under compose.
            environments = [Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") for pid in _descendants(process.pid)]
            key = b"CLASSROOM_BLOCKLIST="
            lists = {v.removeprefix(key).decode() for e in environments for v in e if v.startswith(key)}
            assert len(lists) == 1 and (ROOT / lists.pop()).is_file()
            # Shapes beside the model, for lessons 9 and 10: the front end is told where, and it is Shapes.
            assert (
                f"Lessons 9 and 10: Shapes, on localhost:{ports['SHAPES']} beside {tiny_dir}\n" in log_path.read_text()
            )
            key = b"CLASSROOM_SHAPES_ADDR="
            told = {v.removeprefix(key).decode() for e in environments for v in e if v.startswith(key)}
            assert told == {f"localhost:{ports['SHAPES']}"}
            wait_until_serving(f"127.0.0.1:{ports['SHAPES']}", timeout=120)
            shapes = client_for(f"127.0.0.1:{ports['SHAPES']}")
            try:
                assert shapes.model_info().model_id == "shapes"
            finally:
                shapes.close()
        finally:
            stop(process)


def _descendants(pid: int) -> list[int]:
    """`pid` and every process under it (the script, Redis, the service, the front end)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *(d for child in children for d in _descendants(int(child)))]
