"""Many concurrent Generate streams from one client process, timed: the benchmarks' load."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import statistics
import time
import urllib.request
from collections.abc import AsyncIterable, AsyncIterator, Iterator

import grpc
from prometheus_client.parser import text_string_to_metric_families

from services.common.api import STUDENT_METADATA, aunbatch, pb, pb_grpc
from tests.bench.floor_server import FLOOR_METHOD


async def read(
    stub: pb_grpc.DiffusionServiceStub, message: pb.GenerateRequest, metadata: tuple[tuple[str, str | bytes], ...]
) -> tuple[float, float, int, bool, int]:
    """(time to first frame, time to the final image, frames, cache hit, messages) for one reader.

    The time to the final image stays 0 when the stream ended without one.
    """
    started = time.perf_counter()
    first = last = 0.0
    frames, hit, messages = 0, False, 0

    async def counted(call: AsyncIterable[pb.GenerateResponse]) -> AsyncIterator[pb.GenerateResponse]:
        nonlocal messages
        async for response in call:
            messages += 1
            yield response

    async for response in aunbatch(counted(stub.Generate(message, metadata=metadata))):
        kind = response.WhichOneof("event")
        if kind == "status":
            hit = response.status.cache_hit
        elif kind == "frame":
            frames += 1
            if frames == 1:
                first = time.perf_counter() - started
        elif kind == "final":
            last = time.perf_counter() - started
    return first, last, frames, hit, messages


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@contextlib.contextmanager
def client_gc_off() -> Iterator[None]:
    """The load generator's own garbage collector off while it times (as `timeit` does).

    The benchmark process holds pytest, torch and every test module: one full
    collection there stops all 200 simulated readers for 0.3 to 0.9 s on a 2-core
    machine, which would be timed as the service's. The service's pauses are its own
    and are reported (`service_gc_pauses`).
    """
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def service_gc_pauses(metrics_port: int) -> dict[str, tuple[int, float]]:
    """Per generation, (collections, seconds in all), read from the service's `classroom_gc_pause_seconds`."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    totals: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "classroom_gc_pause_seconds":
            for sample in family.samples:
                kind = sample.name.removeprefix(family.name)
                if kind in ("_count", "_sum"):
                    totals.setdefault(sample.labels["generation"], [0, 0.0])[kind == "_sum"] = sample.value
    return {generation: (int(count), seconds) for generation, (count, seconds) in totals.items()}


async def crowd(address: str, messages: list[pb.GenerateRequest]) -> dict[str, float]:
    """Every message as its own student, all at once; timings of the whole crowd."""
    with client_gc_off():
        return await _crowd(address, messages)


async def _crowd(address: str, messages: list[pb.GenerateRequest]) -> dict[str, float]:
    options = [("grpc.max_receive_message_length", 64 * 2**20)]
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        stub = pb_grpc.DiffusionServiceStub(channel)
        started = time.perf_counter()
        results = await asyncio.gather(
            *(read(stub, m, ((STUDENT_METADATA, f"student-{i}"),)) for i, m in enumerate(messages))
        )
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
        "messages_per_stream": statistics.mean(r[4] for r in results),
        "wall": wall,
    }


async def unary_crowd(address: str, calls: int) -> dict[str, float]:
    """The floor under any stream's first message: this many GetServerStats calls at once, timed."""
    with client_gc_off():
        return await _unary_crowd(address, calls)


async def _unary_crowd(address: str, calls: int) -> dict[str, float]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.DiffusionServiceStub(channel)

        async def one() -> float:
            started = time.perf_counter()
            await stub.GetServerStats(pb.GetServerStatsRequest())
            return time.perf_counter() - started

        times = await asyncio.gather(*(one() for _ in range(calls)))
    return {"p50": statistics.median(times), "p99": percentile(times, 0.99)}


async def stream_floor(address: str, calls: int, first_message_bytes: int) -> dict[str, float]:
    """Time to the first message of this many concurrent streams from `tests.bench.floor_server`."""
    with client_gc_off():
        async with grpc.aio.insecure_channel(address) as channel:
            stream = channel.unary_stream(FLOOR_METHOD)

            async def first() -> float:
                started = time.perf_counter()
                call = stream(str(first_message_bytes).encode())
                async for _ in call:
                    break
                elapsed = time.perf_counter() - started
                call.cancel()
                return elapsed

            times = await asyncio.gather(*(first() for _ in range(calls)))
    return {"p50": statistics.median(times), "p99": percentile(times, 0.99)}
