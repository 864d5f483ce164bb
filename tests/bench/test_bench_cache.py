"""Benchmark: a class reading cached trajectories at once, against computing the same requests.

Through the real service (its own process, as deployed) and a real Redis:
- 200 concurrent readers of one cached 50-step 512 px trajectory;
- 200 readers spread over 20 cached trajectories (10 each);
- the baseline: the same request computed by the model for each reader (single
  flight and cache off), measured in the same run with fewer readers
  (BENCH_COMPUTED_READERS, 4 by default: each costs a full model run).
Readers ask for latents and previews. Reported: time to first frame and to the
last frame (p50, p99) and frames per second over all readers; two floors, from the
same client: as many concurrent unary calls that carry nothing, and as many streams
from a do-nothing gRPC server sending a first message of the same size; the
service's garbage-collection pauses during the run; and a full collection's pause
on the service's start-up heap, before and after the service freezes it.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import grpc
import pytest

from services.common.api import pb, pb_grpc
from tests.bench.streams import crowd, service_gc_pauses, stream_floor, unary_crowd
from tests.bench.test_bench_stream import machine
from tests.integration.helpers import request
from tests.support.redis_server import RedisServer
from tests.support.servers import free_port, start_inference_process, wait_until_serving

READERS = int(os.environ.get("BENCH_READERS", "200"))
TRAJECTORIES = int(os.environ.get("BENCH_TRAJECTORIES", "20"))
COMPUTED_READERS = int(os.environ.get("BENCH_COMPUTED_READERS", "4"))
STEPS = int(os.environ.get("BENCH_STEPS", "50"))
SIZE = 512
INCLUDE = ["latent", "latent_preview", "predicted_x0_preview"]


def spec(index: int) -> pb.GenerateRequest:
    return request(
        f"a paper lantern festival, variation {index}",
        seed=index,
        num_inference_steps=STEPS,
        width=SIZE,
        height=SIZE,
        scheduler="lms",
        include=INCLUDE,
    )


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("bench-redis")).start()
    yield server.url
    server.stop()


def serve(env: dict[str, str]):
    process, address = start_inference_process(env)
    wait_until_serving(address, process=process)
    return process, address


def stream_floor_server() -> tuple[subprocess.Popen[bytes], str]:
    """tests/bench/floor_server.py in its own process, as the service runs in its own."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "tests.bench.floor_server", str(port)])
    address = f"127.0.0.1:{port}"
    with grpc.insecure_channel(address) as channel:
        grpc.channel_ready_future(channel).result(timeout=60)
    return process, address


def test_class_reading_cached_trajectories(tiny_dir, redis_url):
    base = {"CLASSROOM_MODEL": "tiny", "CLASSROOM_TINY_DIR": str(tiny_dir), "CLASSROOM_LOG_LEVEL": "WARNING"}
    metrics_port = free_port()
    process, address = serve(base | {"CLASSROOM_REDIS_URL": redis_url, "CLASSROOM_METRICS_PORT": str(metrics_port)})
    try:
        # Fill the cache: one trajectory per variation, computed once.
        asyncio.run(crowd(address, [spec(i) for i in range(TRAJECTORIES)]))
        with grpc.insecure_channel(address) as channel:
            first_message_bytes = next(pb_grpc.DiffusionServiceStub(channel).Generate(spec(0))).ByteSize()
        gc_before = service_gc_pauses(metrics_port)
        floor = asyncio.run(unary_crowd(address, READERS))
        one = asyncio.run(crowd(address, [spec(0)] * READERS))
        spread = asyncio.run(crowd(address, [spec(i % TRAJECTORIES) for i in range(READERS)]))
        gc_after = service_gc_pauses(metrics_port)
    finally:
        process.terminate()
        process.wait(60)
    floor_process, floor_address = stream_floor_server()
    try:
        floor_stream = asyncio.run(stream_floor(floor_address, READERS, first_message_bytes))
    finally:
        floor_process.terminate()
        floor_process.wait(60)
    process, address = serve(base | {"CLASSROOM_REDIS_URL": "", "CLASSROOM_SINGLE_FLIGHT": "false"})
    try:
        computed = asyncio.run(crowd(address, [spec(0)] * COMPUTED_READERS))
    finally:
        process.terminate()
        process.wait(60)

    probe = [sys.executable, "-m", "tests.bench.gc_heap"]
    heap = json.loads(subprocess.run(probe, env=os.environ | base, capture_output=True, text=True, check=True).stdout)

    assert one["hits"] == READERS and spread["hits"] == READERS and computed["hits"] == 0
    assert heap["after_s"] < heap["before_s"]
    rows = [("one cached trajectory", one), (f"{TRAJECTORIES} cached trajectories", spread),
            ("computed by the model (single flight, cache off)", computed)]  # fmt: skip
    print(f"\n## A class reading cached trajectories\nmachine: {machine()}\n"
          f"tiny model, {STEPS} steps, {SIZE}x{SIZE}, LMS; readers ask for {', '.join(INCLUDE)}\n"
          "| scenario | readers | first frame p50 / p99 (ms) | last frame p50 / p99 (s) | frames/s | messages/stream |"
          "\n"
          "|---|---|---|---|---|---|")  # fmt: skip
    for name, r in rows:
        print(f"| {name} | {r['readers']} | {r['ttff_p50'] * 1e3:.0f} / {r['ttff_p99'] * 1e3:.0f} | "
              f"{r['ttlf_p50']:.2f} / {r['ttlf_p99']:.2f} | {r['frames_per_s']:.0f} | "
              f"{r['messages_per_stream']:.1f} |")  # fmt: skip
    print(
        f"floor: {READERS} concurrent GetServerStats calls (no payload), p50 / p99: "
        f"{floor['p50'] * 1e3:.0f} / {floor['p99'] * 1e3:.0f} ms"
    )
    print(
        f"streaming floor: {READERS} concurrent streams from a do-nothing Python gRPC server "
        f"(tests/bench/floor_server.py), first message of {first_message_bytes:,} bytes as the service's, p50 / p99: "
        f"{floor_stream['p50'] * 1e3:.0f} / {floor_stream['p99'] * 1e3:.0f} ms; "
        f"one cached trajectory's first frame p99 is {one['ttff_p99'] / floor_stream['p99']:.1f}x that"
    )
    print(f"first frame p99, computed / cached: {computed['ttff_p99'] / one['ttff_p99']:.0f}x")
    collections, seconds = (gc_after["2"][i] - gc_before["2"][i] for i in (0, 1))
    print(f"the service's full garbage collections during both readings: {collections}, {seconds * 1e3:.0f} ms in all")
    print(
        f"a full collection on the service's start-up heap ({heap['tracked']:,} objects): "
        f"{heap['before_s'] * 1e3:.0f} ms; after the service freezes it: {heap['after_s'] * 1e6:.0f} µs"
    )
