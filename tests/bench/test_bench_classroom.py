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
from pathlib import Path

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


async def classroom(address: str, lessons: list[pb.LessonEntry], students: int, duration_s: float) -> Tally:
    tally = Tally()
    until = time.monotonic() + duration_s
    # Like the front end: one channel shared by every student's session.
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.DiffusionServiceStub(channel)
        await asyncio.gather(*(student(i, stub, lessons, until, tally) for i in range(students)))
    return tally


def quantile(values: list[float], q: float) -> float:
    """The median or a percentile as the reports read them (NaN when there are none, as in a very short run)."""
    if not values:
        return float("nan")
    return statistics.median(values) if q == 0.5 else percentile(values, q)


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("load-redis")).start()
    yield server.url
    server.stop()


def measure_class_load(
    tiny_dir: Path,
    redis_url: str,
    students: int = STUDENTS,
    duration_s: float = DURATION_S,
    memory_cache_mb: str = MEMORY_CACHE_MB,
    catalog: Path = LESSON_CATALOG,
) -> tuple[dict, str]:
    """The class for `duration_s` against the service with the lesson catalog precomputed: (figures, report)."""
    from services.precompute.render import render_catalog

    metrics_port = free_port()
    env = {"CLASSROOM_MODEL": "tiny", "CLASSROOM_TINY_DIR": str(tiny_dir), "CLASSROOM_REDIS_URL": redis_url,
           "CLASSROOM_CATALOG": str(catalog), "CLASSROOM_LOG_LEVEL": "WARNING",
           "CLASSROOM_MEMORY_CACHE_MB": memory_cache_mb, "CLASSROOM_METRICS_PORT": str(metrics_port)}  # fmt: skip
    process, address = start_inference_process(env)
    memory: list[tuple[float, int]] = []
    try:
        wait_until_serving(address, process=process)
        channel, stub = stub_for(address)
        rendered = render_catalog(client_for(address), progress=False)
        assert not rendered.failed, rendered.failed[:3]
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
                return await classroom(address, lessons, students, duration_s)
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
    lessons_p = (quantile(tally.lessons, 0.5), quantile(tally.lessons, 0.99))
    lessons_done_p = (quantile(tally.lessons_done, 0.5), quantile(tally.lessons_done, 0.99))
    lives_p = (quantile(tally.lives, 0.5), quantile(tally.lives, 0.99))
    lives_done_p = (quantile(tally.lives_done, 0.5), quantile(tally.lives_done, 0.99))
    report = (f"streams completed: {streams} ({len(tally.lessons)} lessons, {len(tally.lives)} live) in {wall:.0f} s; "
          f"refused with a retry time: {tally.refused}; unexpected errors: {len(tally.errors)}; "
          f"incomplete streams: {tally.incomplete}\n"
          f"lesson first frame p50 / p99: {lessons_p[0] * 1e3:.0f} / {lessons_p[1] * 1e3:.0f} ms; "
          f"lesson complete p50 / p99: {lessons_done_p[0] * 1e3:.0f} / {lessons_done_p[1] * 1e3:.0f} ms\n"
          f"live first frame p50 / p99: {lives_p[0]:.2f} / {lives_p[1]:.2f} s; "
          f"live image p50 / p99: {lives_done_p[0]:.2f} / {lives_done_p[1]:.2f} s\n"
          f"service RSS (memory cache {memory_cache_mb} MB): start {mib[0]:.0f} MiB, a quarter in {quarter:.0f}, "
          f"half way {half:.0f}, end {mib[-1]:.0f}, max {max(mib):.0f}\n"
          f"server: {stats.generations_completed} computed, {stats.cache_hits} cache hits, "
          f"{stats.single_flight_joins} joins, {stats.generations_failed} failed\n"
          "service garbage collections during the class (generation: count, total ms): "
          + ", ".join(f"{g}: {n}, {s * 1e3:.0f}" for g, (n, s) in sorted(gc_during.items())))  # fmt: skip
    figures = {
        "students": students,
        "duration_s": duration_s,
        "wall_s": wall,
        "streams": streams,
        "lessons": len(tally.lessons),
        "live": len(tally.lives),
        "refused": tally.refused,
        "errors": tally.errors[:5],
        "unexpected_errors": len(tally.errors),
        "incomplete": tally.incomplete,
        "not_cached": tally.not_cached,
        "generations_failed": stats.generations_failed,
        "lesson_first_frame_p50_p99_s": lessons_p,
        "lesson_complete_p50_p99_s": lessons_done_p,
        "live_first_frame_p50_p99_s": lives_p,
        "live_image_p50_p99_s": lives_done_p,
        "service_rss_mib": [round(m) for m in mib],
    }
    return figures, report


def test_a_class_of_200_for_a_few_minutes(tiny_dir, redis_url):
    figures, report = measure_class_load(tiny_dir, redis_url)
    print(f"\n## A class of {STUDENTS} for {DURATION_S:.0f} s\nmachine: {machine()}\n{report}")
    assert not figures["errors"], figures["errors"]
    assert figures["incomplete"] == 0 and figures["not_cached"] == 0
    assert figures["generations_failed"] == 0
    assert figures["lessons"] and figures["live"]
