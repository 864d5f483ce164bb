"""Many concurrent Generate streams from one client process, timed: the benchmarks' load."""

from __future__ import annotations

import asyncio
import statistics
import time

import grpc

from services.common.api import STUDENT_METADATA, pb, pb_grpc


async def read(
    stub: pb_grpc.DiffusionServiceStub, message: pb.GenerateRequest, student: str
) -> tuple[float, float, int, bool]:
    """(time to first frame, time to last frame, frames, cache hit) for one reader."""
    started = time.perf_counter()
    first = last = 0.0
    frames, hit = 0, False
    async for response in stub.Generate(message, metadata=((STUDENT_METADATA, student),)):
        kind = response.WhichOneof("event")
        if kind == "status":
            hit = response.status.cache_hit
        elif kind == "frame":
            frames += 1
            if frames == 1:
                first = time.perf_counter() - started
        elif kind == "final":
            last = time.perf_counter() - started
    return first, last, frames, hit


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def crowd(address: str, messages: list[pb.GenerateRequest]) -> dict[str, float]:
    """Every message as its own student, all at once; timings of the whole crowd."""
    options = [("grpc.max_receive_message_length", 64 * 2**20)]
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        stub = pb_grpc.DiffusionServiceStub(channel)
        started = time.perf_counter()
        results = await asyncio.gather(*(read(stub, m, f"student-{i}") for i, m in enumerate(messages)))
        wall = time.perf_counter() - started
    firsts = [r[0] for r in results]
    lasts = [r[1] for r in results]
    return {
        "readers": len(messages),
        "hits": sum(r[3] for r in results),
        "frames": sum(r[2] for r in results),
        "ttff_p50": statistics.median(firsts),
        "ttff_p95": percentile(firsts, 0.95),
        "ttff_p99": percentile(firsts, 0.99),
        "ttlf_p50": statistics.median(lasts),
        "ttlf_p95": percentile(lasts, 0.95),
        "ttlf_p99": percentile(lasts, 0.99),
        "frames_per_s": sum(r[2] for r in results) / wall,
        "wall": wall,
    }
