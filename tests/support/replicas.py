"""Many replicas of the inference service on one Redis, as a district runs them: real processes.

`running_replicas(folder, count)` starts one real redis-server and `count` processes of
`python -m services.inference serve` (the Shapes model, its lessons), each on a port of its
own, all sharing Redis, the cache secret, the API token and the teacher code, as replicas
of one Deployment do. It yields a `Replicas`: their addresses, a client for each, and a way
to kill one (SIGKILL, as a crash or an OOM kill) and start it again on the same port.

    with running_replicas(tmp_path_factory.mktemp("replicas"), count=2) as replicas:
        a, b = replicas.addresses
        replicas.kill(0)
        replicas.start(0)  # the same port; waits until SERVING

Share one set per test module (a module-scoped fixture): each replica takes about 10 s to
start on Shapes on a 2-core machine.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from services.common.client import ClassroomClient, ClientSettings
from tests.support.redis_server import RedisServer
from tests.support.servers import free_port, start_inference_process, wait_until_serving

API_TOKEN = "the district's api token"
TEACHER_CODE = "owl-42"
CACHE_SECRET = "one secret for every replica"


@dataclass
class Replicas:
    """N inference processes on one Redis; index them as `addresses` lists them."""

    redis: RedisServer
    folder: Path
    env: dict[str, str]  # what every replica gets (CLASSROOM_ variables)
    ports: list[int]
    processes: list[subprocess.Popen[str] | None] = field(default_factory=list)

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{port}" for port in self.ports]

    def client(self, index: int, class_name: str = "7B") -> ClassroomClient:
        """The shared client (as the front end makes its calls) for one replica, in one class."""
        settings = ClientSettings(inference_addr=self.addresses[index], api_token=API_TOKEN)
        return ClassroomClient(settings, class_name=class_name)

    def start(self, index: int, timeout: float = 180.0) -> str:
        """Start replica `index` (again) on its own port; its address once it is SERVING."""
        if self.running(index):
            raise RuntimeError(f"replica {index} is already running")
        log = (self.folder / f"replica-{index}.log").open("a")
        env = self.env | {"CLASSROOM_GRPC_PORT": str(self.ports[index])}
        process, address = start_inference_process(env, stdout=log, stderr=subprocess.STDOUT)
        log.close()  # the child holds its own copy
        self.processes[index] = process
        wait_until_serving(address, timeout=timeout, process=process)
        # Clients of one address and options share gRPC's connection to it, and the clients still open
        # on the killed replica left that connection waiting to try again: wait until a client reaches it.
        client = self.client(index)
        try:
            if not client.wait_until_serving(timeout, poll_s=0.2):
                raise TimeoutError(f"no client reached replica {index} at {address}")
        finally:
            client.close()
        return address

    def running(self, index: int) -> bool:
        process = self.processes[index]
        return process is not None and process.poll() is None

    def kill(self, index: int) -> None:
        """SIGKILL replica `index` (nothing of its memory survives) and wait until it is gone."""
        process = self.processes[index]
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(30)

    def restart(self, index: int) -> str:
        """Kill replica `index` and start it again on the same port."""
        self.kill(index)
        return self.start(index)

    def log(self, index: int) -> str:
        """What replica `index` wrote so far (for a failing test's message)."""
        return (self.folder / f"replica-{index}.log").read_text(errors="replace")

    def close(self) -> None:
        for index in range(len(self.ports)):
            self.kill(index)
        self.redis.stop()


@contextmanager
def running_replicas(folder: Path, count: int = 2, **settings: str) -> Iterator[Replicas]:
    """`count` replicas of the service (Shapes) on one fresh Redis; `settings`: more CLASSROOM_ variables.

    The replicas start one after another (two starting at once on 2 cores take as long, and
    their logs interleave); all are stopped, and Redis with them, when the block ends.
    """
    redis = RedisServer(folder / "redis").start()
    env = {
        "CLASSROOM_MODEL": "shapes",
        "CLASSROOM_REDIS_URL": redis.url,
        "CLASSROOM_CACHE_SECRET": CACHE_SECRET,
        "CLASSROOM_API_TOKEN": API_TOKEN,
        "CLASSROOM_TEACHER_CODE": TEACHER_CODE,
        "CLASSROOM_RATE_LIMIT_PER_MINUTE": "0",  # a test is one busy "student"
        "CLASSROOM_TEXT_RATE_LIMIT_PER_MINUTE": "0",
        "HF_HUB_OFFLINE": "1",
        **settings,
    }
    replicas = Replicas(redis, folder, env, [free_port() for _ in range(count)], [None] * count)
    try:
        for index in range(count):
            replicas.start(index)
        yield replicas
    finally:
        replicas.close()
