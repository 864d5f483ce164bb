"""Benchmark: the service's own loop on the simulated H100 (`simulated-h100`), against what its sleeps allow.

One real `python -m services.inference serve` process on a real Redis, its UNet call
sleeping what an H100's takes (services/inference/diffusion/simulated.py) and computing
nothing; everything else (gRPC, the classroom, the batch scheduler, guidance and the
scheduler step, the previews, the frames, the final PNG) is the service's real work on
this CPU. For each class size N in BENCH_LOOP_SIZES (1, 8, 32, 64), N students each ask
at once for a picture of their own (a new prompt and seed, 512 px, 25 steps, guided,
the player's previews at every step), BENCH_LOOP_ROUNDS (3) times; a round lasts from
the asking to the last picture.

Two ideals, both from the simulated UNet's sleeps alone:

- **allowed**: the batch the scheduler allows (min(N, CLASSROOM_MAX_BATCH_SIZE)) for
  every one of the 25 steps: N students x 25 steps in ceil(N / batch) x 25 calls of that
  batch. This is the target: a round can take no less, so ratio = achieved / allowed
  counts every loss (a start that waits, a batch that runs short, work between calls).
- **ran**: the batches the service actually ran (its own counts of UNet calls and
  steps, GetServerStats): the sleeps it did; ran / round time says how much of the round
  the worker spent in the UNet. When it is below allowed, the batches ran short.

Nothing here asserts a time; it checks that every picture came. docs/benchmarks.md,
"The service's own loop on the simulated GPU (stage 20)", has the figures.
"""

from __future__ import annotations

import asyncio
import math
import os
import time

import grpc
import psutil
import pytest

from services.common.api import NAME_METADATA, STUDENT_METADATA, bearer, pb, pb_grpc
from services.inference.diffusion.simulated import H100, SIMULATED_H100
from tests.bench.streams import client_gc_off
from tests.bench.test_bench_district import Picture, picture, request
from tests.bench.test_bench_stream import machine
from tests.support.replicas import API_TOKEN, Replicas, running_replicas

SIZES = [int(n) for n in os.environ.get("BENCH_LOOP_SIZES", "1,8,32,64").split(",")]
ROUNDS = int(os.environ.get("BENCH_LOOP_ROUNDS", "3"))
BATCH = int(os.environ.get("BENCH_LOOP_BATCH", "64"))  # the H100's pick (docs/benchmarks.md)
STEPS = 25


def stats(address: str) -> pb.GetServerStatsResponse:
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.DiffusionServiceStub(channel)
        return stub.GetServerStats(pb.GetServerStatsRequest(), metadata=bearer(API_TOKEN), timeout=30)


async def one_round(stub: pb_grpc.DiffusionServiceStub, students: int, label: str) -> list[Picture]:
    """Every student asks at once for a picture of their own; all of them, once they have come."""

    async def ask(index: int) -> Picture:
        metadata = (*bearer(API_TOKEN), (STUDENT_METADATA, f"{label}: {index}"),
                    (NAME_METADATA, f"Student {index}".encode()))  # fmt: skip
        return await picture(stub, request(label, index, 0), metadata, 0.0)

    return list(await asyncio.gather(*(ask(i) for i in range(students))))


async def a_class(address: str, students: int, run: str = "") -> tuple[float, list[Picture]]:
    """ROUNDS rounds of `students`; the seconds the rounds took in all (asking to the last picture) and the pictures."""
    options = [("grpc.max_receive_message_length", 64 * 2**20)]
    pictures: list[Picture] = []
    seconds = 0.0
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        stub = pb_grpc.DiffusionServiceStub(channel)
        for number in range(ROUNDS):
            began = time.perf_counter()
            pictures += await one_round(stub, students, f"{run}class of {students}, round {number}")
            seconds += time.perf_counter() - began
    return seconds, pictures


def allowed_seconds(students: int) -> float:
    """The sleeps of one round at the batch the scheduler allows: ceil(N / batch) calls a step, 25 steps."""
    batch = min(students, BATCH)
    full, rest = divmod(students, batch)
    per_step = full * H100.unet_seconds(2 * batch) + (H100.unet_seconds(2 * rest) if rest else 0.0)
    return STEPS * per_step


def measure(replicas: Replicas, students: int) -> dict:
    address = replicas.addresses[0]
    process = psutil.Process(replicas.processes[0].pid)
    cpu_before, before = sum(process.cpu_times()[:2]), stats(address)
    seconds, pictures = asyncio.run(a_class(address, students))
    cpu_after, after = sum(process.cpu_times()[:2]), stats(address)
    steps = after.denoising_steps - before.denoising_steps
    calls = after.unet_calls - before.unet_calls
    slept = calls * H100.fixed_ms / 1000 + 2 * steps * H100.per_row_ms / 1000
    achieved = steps / seconds
    allowed = students * STEPS * ROUNDS / (ROUNDS * allowed_seconds(students))
    done = [p for p in pictures if p.picture_s is not None]
    return {
        "students": students,
        "pictures": len(done),
        "lost": len(pictures) - len(done),
        "errors": sorted({p.error for p in pictures if p.error})[:3],
        "steps": steps,
        "achieved": achieved,
        "allowed": allowed,
        "ratio": achieved / allowed,
        "ran_share": slept / seconds,
        "batch": steps / max(1, calls),
        "first_frame_s": max((p.first_frame_s or 0.0) for p in done) if done else math.nan,
        "cpu_cores": (cpu_after - cpu_before) / seconds,
        "load": os.getloadavg()[0],
        "rss_mb": process.memory_info().rss / 2**20,
        "stored": after.cache_writes - before.cache_writes,
        "staged": after.cache_writes_staged - before.cache_writes_staged,
    }


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    settings = {
        "CLASSROOM_MODEL": SIMULATED_H100,
        "CLASSROOM_ALLOW_SIMULATED_GPU": "1",
        "CLASSROOM_MAX_BATCH_SIZE": str(BATCH),
        "CLASSROOM_RATE_LIMIT_PER_MINUTE": "0",
        "CLASSROOM_LOG_LEVEL": "WARNING",
    }
    with running_replicas(tmp_path_factory.mktemp("service-loop"), count=1, **settings) as started:
        yield started


def test_the_service_loop_against_its_sleeps(service):
    # Warm-up: the first picture loads what a first picture loads (tokenizer caches, codecs).
    asyncio.run(a_class(service.addresses[0], 1, "warm-up: "))
    rows = []
    with client_gc_off():
        for students in SIZES:
            rows.append(measure(service, students))
    lines = [
        f"\n## The service's own loop on the simulated GPU ({SIMULATED_H100}: "
        f"{H100.fixed_ms:g} ms + {H100.per_row_ms:g} ms a row)",
        f"machine: {machine()}; allocator: {os.environ.get('CLASSROOM_ALLOCATOR', 'jemalloc')}; "
        f"batch up to {BATCH}; {ROUNDS} rounds a class, {STEPS} steps, 512 px, guided, previews",
        "| students | pictures | guided steps/s | allowed ideal | ratio | UNet sleep share of the round "
        "| generations a call | slowest first frame s | service CPU cores | load avg | service memory MB "
        "| stored (of them staged) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['students']} | {row['pictures']} | {row['achieved']:.1f} | {row['allowed']:.1f} "
            f"| {row['ratio']:.2f} | {row['ran_share']:.2f} | {row['batch']:.1f} | {row['first_frame_s']:.2f} "
            f"| {row['cpu_cores']:.2f} | {row['load']:.1f} | {row['rss_mb']:.0f} | {row['stored']} ({row['staged']}) |"
        )
    print("\n".join(lines))
    for row in rows:
        assert row["lost"] == 0, (row["students"], row["errors"])
