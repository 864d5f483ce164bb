"""Load test: a class of simulated students using the service for a few minutes.

Through the real service (its own process) and a real Redis, with the small
lesson catalog precomputed. Each of BENCH_STUDENTS students (200) is a
grpc.aio client loop that, until BENCH_LOAD_S (180 s) have passed, thinks for
1 to 5 seconds, then either opens a lesson example (4 times in 5) or asks for a
picture of its own (64 px, 4 to 8 steps). Every student has its own id and
name, so the per-student limits apply as in class.

Checked: no unexpected error (a refusal with a retry time, such as the rate
limit, is expected and counted), every stream that started ended with its
image, and every lesson came from the cache. Reported: streams, refusals,
time to first frame for lessons and for live pictures, and the service's
memory (RSS) over the run.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import time
from dataclasses import dataclass, field

import grpc
import psutil
import pytest

from services.common.api import NAME_METADATA, STUDENT_METADATA, pb, pb_grpc
from tests.bench.streams import client_gc_off, percentile, read, service_gc_pauses
from tests.bench.test_bench_stream import machine
from tests.frontend.conftest import LESSON_CATALOG
from tests.integration.helpers import request
from tests.support.redis_server import RedisServer
from tests.support.servers import client_for, free_port, start_inference_process, stub_for, wait_until_serving

STUDENTS = int(os.environ.get("BENCH_STUDENTS", "200"))
DURATION_S = float(os.environ.get("BENCH_LOAD_S", "180"))
# The service's in-memory trajectory cache, smaller than its 512 MB default so that it fills
# within the run and memory can be seen to level off.
MEMORY_CACHE_MB = os.environ.get("BENCH_MEMORY_CACHE_MB", "64")
EXPECTED_REFUSALS = {grpc.StatusCode.RESOURCE_EXHAUSTED}  # rate limit, queue: they carry a retry time


@dataclass
class Tally:
    lessons: list[float] = field(default_factory=list)  # time to first frame, s
    lessons_done: list[float] = field(default_factory=list)  # time to the final image, s
    lives: list[float] = field(default_factory=list)
    lives_done: list[float] = field(default_factory=list)  # time to the final image, s
    refused: int = 0
    incomplete: int = 0
    not_cached: int = 0
    errors: list[str] = field(default_factory=list)


async def student(
    index: int, stub: pb_grpc.DiffusionServiceStub, lessons: list[pb.LessonEntry], until: float, tally: Tally
) -> None:
    rng = random.Random(index)
    metadata = ((STUDENT_METADATA, f"load-{index}"), (NAME_METADATA, f"Student {index}".encode()))
    while time.monotonic() < until:
        await asyncio.sleep(rng.uniform(1.0, 5.0))
        lesson = rng.random() < 0.8
        if lesson:
            message = rng.choice(lessons).request
        else:
            message = request(f"a drawing by student {index}, idea {rng.randrange(10**6)}", seed=rng.randrange(1000),
                              num_inference_steps=rng.randint(4, 8), width=64, height=64,
                              include=["latent_preview", "predicted_x0_preview"])  # fmt: skip
        try:
            first, final, _, hit, _ = await read(stub, message, metadata)
        except grpc.aio.AioRpcError as error:
            if error.code() in EXPECTED_REFUSALS:
                tally.refused += 1
            else:
                tally.errors.append(f"{error.code().name}: {error.details()}")
            continue
        if not final:  # the stream ended without its image
            tally.incomplete += 1
        elif lesson:
            tally.lessons.append(first)
            tally.lessons_done.append(final)
            tally.not_cached += not hit
        else:
            tally.lives.append(first)
            tally.lives_done.append(final)


async def classroom(address: str, lessons: list[pb.LessonEntry]) -> Tally:
    tally = Tally()
    until = time.monotonic() + DURATION_S
    # Like the front end: one channel shared by every student's session.
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.DiffusionServiceStub(channel)
        await asyncio.gather(*(student(i, stub, lessons, until, tally) for i in range(STUDENTS)))
    return tally


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("load-redis")).start()
    yield server.url
    server.stop()


def test_a_class_of_200_for_a_few_minutes(tiny_dir, redis_url):
    from services.precompute.render import render_catalog

    metrics_port = free_port()
    env = {"CLASSROOM_MODEL": "tiny", "CLASSROOM_TINY_DIR": str(tiny_dir), "CLASSROOM_REDIS_URL": redis_url,
           "CLASSROOM_CATALOG": str(LESSON_CATALOG), "CLASSROOM_LOG_LEVEL": "WARNING",
           "CLASSROOM_MEMORY_CACHE_MB": MEMORY_CACHE_MB, "CLASSROOM_METRICS_PORT": str(metrics_port)}  # fmt: skip
    process, address = start_inference_process(env)
    memory: list[tuple[float, int]] = []
    try:
        wait_until_serving(address, process=process)
        channel, stub = stub_for(address)
        assert not render_catalog(client_for(address), progress=False).failed
        lessons = list(stub.ListLessons(pb.ListLessonsRequest()).entries)
        channel.close()
        service = psutil.Process(process.pid)
        started = time.monotonic()
        sampling = True

        async def sample() -> None:
            while sampling:
                memory.append((time.monotonic() - started, service.memory_info().rss))
                await asyncio.sleep(5)

        async def run() -> Tally:
            nonlocal sampling
            sampler = asyncio.create_task(sample())
            try:
                return await classroom(address, lessons)
            finally:
                sampling = False
                await sampler

        gc_before = service_gc_pauses(metrics_port)
        with client_gc_off():  # the client's own pauses are not the service's
            tally = asyncio.run(run())
        wall = time.monotonic() - started
        gc_after = service_gc_pauses(metrics_port)
        gc_during = {g: (n - gc_before[g][0], s - gc_before[g][1]) for g, (n, s) in gc_after.items()}
        channel, stub = stub_for(address)
        stats = stub.GetServerStats(pb.GetServerStatsRequest())
        channel.close()
    finally:
        process.terminate()
        process.wait(60)

    streams = len(tally.lessons) + len(tally.lives)
    mib = [rss / 2**20 for _, rss in memory]
    quarter, half = mib[len(mib) // 4], mib[len(mib) // 2]
    print(f"\n## A class of {STUDENTS} for {DURATION_S:.0f} s\nmachine: {machine()}\n"
          f"streams completed: {streams} ({len(tally.lessons)} lessons, {len(tally.lives)} live) in {wall:.0f} s; "
          f"refused with a retry time: {tally.refused}; unexpected errors: {len(tally.errors)}; "
          f"incomplete streams: {tally.incomplete}\n"
          f"lesson first frame p50 / p99: {statistics.median(tally.lessons) * 1e3:.0f} / "
          f"{percentile(tally.lessons, 0.99) * 1e3:.0f} ms; lesson complete p50 / p99: "
          f"{statistics.median(tally.lessons_done) * 1e3:.0f} / {percentile(tally.lessons_done, 0.99) * 1e3:.0f} ms\n"
          f"live first frame p50 / p99: {statistics.median(tally.lives):.2f} / {percentile(tally.lives, 0.99):.2f} s; "
          f"live image p50 / p99: {statistics.median(tally.lives_done):.2f} / "
          f"{percentile(tally.lives_done, 0.99):.2f} s\n"
          f"service RSS (memory cache {MEMORY_CACHE_MB} MB): start {mib[0]:.0f} MiB, a quarter in {quarter:.0f}, "
          f"half way {half:.0f}, end {mib[-1]:.0f}, max {max(mib):.0f}\n"
          f"server: {stats.generations_completed} computed, {stats.cache_hits} cache hits, "
          f"{stats.single_flight_joins} joins, {stats.generations_failed} failed\n"
          "service garbage collections during the class (generation: count, total ms): "
          + ", ".join(f"{g}: {n}, {s * 1e3:.0f}" for g, (n, s) in sorted(gc_during.items())))  # fmt: skip
    assert not tally.errors, tally.errors[:5]
    assert tally.incomplete == 0 and tally.not_cached == 0
    assert stats.generations_failed == 0
    assert tally.lessons and tally.lives
