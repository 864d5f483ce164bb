"""Shared fixtures: the tiny model, a real inference server on loopback, and diffusers' own pipeline."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from services.inference.diffusion.models import device_and_dtype
from services.inference.diffusion.tiny import ensure_tiny_model
from services.inference.settings import InferenceSettings
from tests.support.redis_server import RedisServer
from tests.support.servers import ServerThread, running_server, stub_for

warnings.filterwarnings("ignore", message=".*torchvision.*")

CACHE_SECRET = "the test suite's cache secret"


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def fresh_redis(tmp_path: Path) -> Iterator[Callable[[str], RedisServer]]:
    """Start empty Redis servers of the test's own, by name; all stopped afterwards."""
    servers: list[RedisServer] = []

    def start(name: str) -> RedisServer:
        server = RedisServer(tmp_path / name).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def settings(tiny_dir: Path, redis_server: RedisServer) -> InferenceSettings:
    return InferenceSettings(
        model="tiny",
        tiny_dir=tiny_dir,
        host="127.0.0.1",
        grpc_port=0,
        shutdown_grace_s=5,
        redis_url=redis_server.url,
        metrics_port=0,
        rate_limit_per_minute=0,  # the suite is one busy "student"; tests/integration/test_safety.py turns it on
        text_rate_limit_per_minute=0,
        cache_secret=CACHE_SECRET,
        unet_compile="off",  # the suite compares with diffusers' eager pipeline bit for bit, on a GPU too
    )


@pytest.fixture(scope="session")
def server(settings: InferenceSettings) -> Iterator[ServerThread]:
    with running_server(settings) as running:
        yield running


@pytest.fixture(scope="session")
def stub(server: ServerThread):
    channel, stub = stub_for(server.address)
    yield stub
    channel.close()


@pytest.fixture(scope="session")
def other_replica_stub(settings: InferenceSettings):
    """A second replica on the suite's Redis: what `server` keeps in memory, this one can only find in Redis."""
    with running_server(settings) as running:
        channel, stub = stub_for(running.address)
        yield stub
        channel.close()


@pytest.fixture(scope="session")
def scheduler_config(tiny_dir: Path) -> dict:
    return json.loads((tiny_dir / "scheduler" / "scheduler_config.json").read_text())


@pytest.fixture(scope="session")
def pipeline(tiny_dir: Path):
    """Diffusers' own StableDiffusionPipeline on the same saved model: the reference."""
    from diffusers import StableDiffusionPipeline

    device, dtype = device_and_dtype("auto")  # where the service puts the model
    pipe = StableDiffusionPipeline.from_pretrained(
        tiny_dir, safety_checker=None, requires_safety_checker=False, torch_dtype=dtype
    ).to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe
