"""Start a real inference server on loopback, in a thread of the test process."""

from __future__ import annotations

import asyncio
import inspect
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.api import SERVICE_NAME, pb_grpc
from services.common.client import ClassroomClient, ClientSettings
from services.inference.classroom.classroom import Classroom
from services.inference.server import InferenceServer
from services.inference.settings import InferenceSettings

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerThread:
    """A real grpc.aio server with its own event loop on a background thread."""

    def __init__(self, settings: InferenceSettings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.server: InferenceServer | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-inference-server", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = InferenceServer(self.settings)
        self._ready.set()
        self.loop.run_forever()

    def start(self, wait_for_model: bool = True, timeout: float = 120) -> ServerThread:
        self._thread.start()
        self._ready.wait(timeout)
        future = asyncio.run_coroutine_threadsafe(self.server.start(), self.loop)
        if wait_for_model:
            future.result(timeout)
        self.start_future = future
        return self

    def call(self, function: Callable[[], T | Awaitable[T]], timeout: float = 30) -> T:
        """Run `function` on the server's event loop (its state belongs to that thread); a coroutine's result."""

        async def run() -> T:
            result = function()
            return await result if inspect.isawaitable(result) else result

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    @property
    def classroom(self) -> Classroom:
        """The server's Classroom (the model is loaded)."""
        assert self.server.classroom is not None
        return self.server.classroom

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def stop(self, grace: float = 1.0) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(grace), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@contextmanager
def running_server(settings: InferenceSettings, wait_for_model: bool = True) -> Iterator[ServerThread]:
    server = ServerThread(settings).start(wait_for_model=wait_for_model)
    try:
        yield server
    finally:
        server.stop()


def client_for(address: str, request_timeout_s: float | None = None) -> ClassroomClient:
    """The shared client (as the front end and precompute use it) for a server on loopback.

    `request_timeout_s`: a quick call's deadline, where not the front end's (a test that only
    learns from the service what a page should say may wait longer on a busy machine).
    """
    settings = ClientSettings(inference_addr=address)
    if request_timeout_s is not None:
        settings = settings.model_copy(update={"request_timeout_s": request_timeout_s})
    return ClassroomClient(settings)


def stub_for(address: str) -> tuple[grpc.Channel, pb_grpc.DiffusionServiceStub]:
    channel = grpc.insecure_channel(address)
    return channel, pb_grpc.DiffusionServiceStub(channel)


def health_status(channel: grpc.Channel, service: str = SERVICE_NAME) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


def wait_until_serving(address: str, timeout: float = 120.0, process: subprocess.Popen | None = None) -> None:
    """Poll the health service until SERVING; fail at once if the server's process has exited."""
    with grpc.insecure_channel(address) as channel:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"the inference service exited with code {process.returncode}")
            try:
                if health_status(channel) == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.05)
    raise TimeoutError(f"the inference service at {address} did not become SERVING")


def start_inference_process(env: dict[str, str], **popen: object) -> tuple[subprocess.Popen[str], str]:
    """`python -m services.inference serve` as a process of its own, as a container runs it.

    It listens on CLASSROOM_GRPC_PORT when `env` names one (a restart on the same port), else on a free port.
    """
    port = int(env.get("CLASSROOM_GRPC_PORT") or free_port())
    defaults = {"CLASSROOM_HOST": "127.0.0.1", "CLASSROOM_GRPC_PORT": str(port), "CLASSROOM_METRICS_PORT": "0"}
    full_env = os.environ | defaults | env
    process = subprocess.Popen([sys.executable, "-m", "services.inference", "serve"], env=full_env, text=True, **popen)
    return process, f"127.0.0.1:{port}"
