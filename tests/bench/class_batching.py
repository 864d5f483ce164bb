"""A class each asking a different picture of the service (its own process), timed: the batching benchmark's load."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

import grpc

from services.common.api import TEACHER_METADATA, pb, pb_grpc
from tests.bench.streams import crowd
from tests.integration.helpers import request
from tests.support.servers import start_inference_process, wait_until_serving

TEACHER_CODE = "benchmark"


def messages(students: int, size: int, steps: int, offset: int) -> list[pb.GenerateRequest]:
    """A different request per student: own prompt and seed, DPM-Solver++, previews only."""
    return [
        request(
            f"a watercolor of animal number {offset + i}",
            seed=offset + i,
            num_inference_steps=steps,
            width=size,
            height=size,
            scheduler="dpm_solver_pp",
            include=["latent_preview"],
        )
        for i in range(students)
    ]


@contextlib.contextmanager
def class_service(model_env: dict[str, str], max_batch: int | None, timeout: float = 600) -> Iterator[str]:
    """The service as its own process, cache and rate limit off; `max_batch` None leaves the batch size to it.

    Each row of a benchmark asks again for every student: the per-student rate limit
    (which holds without Redis too) would refuse them by the fourth row.
    """
    env = model_env | {
        "CLASSROOM_REDIS_URL": "",
        "CLASSROOM_RATE_LIMIT_PER_MINUTE": "0",
        "CLASSROOM_LOG_LEVEL": "WARNING",
        "CLASSROOM_TEACHER_CODE": TEACHER_CODE,
    }
    if max_batch is not None:
        env["CLASSROOM_MAX_BATCH_SIZE"] = str(max_batch)
    process, address = start_inference_process(env)
    try:
        wait_until_serving(address, timeout=timeout, process=process)
        yield address
    finally:
        process.terminate()
        process.wait(60)


def classroom_view(address: str) -> pb.GetClassroomResponse:
    """What the teacher's page sees: the batch size in force, the GPU's memory."""
    with grpc.insecure_channel(address) as channel:
        teacher = pb_grpc.TeacherServiceStub(channel)
        return teacher.GetClassroom(pb.GetClassroomRequest(), metadata=((TEACHER_METADATA, TEACHER_CODE),), timeout=10)


@contextlib.contextmanager
def gpu_memory_peak(address: str, interval: float = 0.25) -> Iterator[list[int]]:
    """Sample the GPU's used memory (as the teacher's page reads it) while the block runs; [peak bytes] after."""
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        with grpc.insecure_channel(address) as channel:
            teacher = pb_grpc.TeacherServiceStub(channel)
            while not stop.is_set():
                with contextlib.suppress(grpc.RpcError):
                    view = teacher.GetClassroom(
                        pb.GetClassroomRequest(), metadata=((TEACHER_METADATA, TEACHER_CODE),), timeout=5
                    )
                    peak[0] = max(peak[0], view.gpu_memory_used_bytes)
                stop.wait(interval)

    sampler = threading.Thread(target=sample, name="gpu-memory-sampler", daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        stop.set()
        sampler.join(10)


def measure_class(address: str, students: int, size: int, steps: int, offset: int) -> dict[str, float]:
    """Every student at once, each a different picture: guided steps per second, first frame and image times."""
    with gpu_memory_peak(address) as peak:
        result = asyncio.run(crowd(address, messages(students, size, steps, offset)))
    result["guided_steps_per_s"] = result["frames"] / result["wall"]
    result["gpu_memory_peak_bytes"] = peak[0]
    result.update(students=students, size=size, steps=steps)
    return result
