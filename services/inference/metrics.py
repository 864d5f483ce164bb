"""Prometheus metrics of the inference service: queue, batching, steps, cache, streams, refusals, GC pauses."""

from __future__ import annotations

import contextlib
import gc
import time
from bisect import bisect_left
from collections.abc import Iterator
from itertools import accumulate
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import HistogramMetricFamily

GC_PAUSE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class GcPauses:
    """How long each of Python's garbage collections stopped the service, by generation.

    Every stream stops while a collection runs. Exposed as the histogram
    `classroom_gc_pause_seconds`. The callback runs inside the collection, in whichever
    thread set it off, so it only adds to plain counters: taking a lock there (as
    prometheus_client's own histograms do) could deadlock. A scrape reads the counters.
    """

    def __init__(self) -> None:
        self._started = 0.0
        # Per generation: one count per bucket, then the count above the last bucket.
        self.counts = [[0] * (len(GC_PAUSE_BUCKETS) + 1) for _ in range(3)]
        self.sums = [0.0] * 3

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        seconds = time.perf_counter() - self._started
        generation = info["generation"]
        self.counts[generation][bisect_left(GC_PAUSE_BUCKETS, seconds)] += 1
        self.sums[generation] += seconds

    def start(self) -> None:
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)

    def stop(self) -> None:
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._callback)

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(
            "classroom_gc_pause_seconds",
            "How long each Python garbage collection stopped the service, by generation.",
            labels=["generation"],
        )
        for generation, counts in enumerate(self.counts):
            cumulative = list(accumulate(counts))
            buckets = [(str(le), n) for le, n in zip(GC_PAUSE_BUCKETS, cumulative, strict=False)]
            family.add_metric([str(generation)], [*buckets, ("+Inf", cumulative[-1])], self.sums[generation])
        yield family


class Metrics:
    """One registry per server, so that several servers can live in one process (tests)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.queue_length = Gauge("classroom_queue_length", "Generations waiting for the GPU.", registry=r)
        self.running = Gauge("classroom_running_generations", "Generations being denoised.", registry=r)
        self.paused = Gauge("classroom_paused", "1 while the teacher has paused generation.", registry=r)
        self.batch_size = Histogram(
            "classroom_batch_generations",
            "Generations sharing one UNet call.",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=r,
        )
        self.step_seconds = Histogram(
            "classroom_unet_step_seconds",
            "Wall time of one (batched) UNet call.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.queue_seconds = Histogram(
            "classroom_queue_seconds",
            "Time a generation waited before it started.",
            buckets=(0.01, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=r,
        )
        self.cache_hits = Counter("classroom_cache_hits", "Streams served from a finished trajectory.", registry=r)
        self.cache_misses = Counter("classroom_cache_misses", "Streams whose trajectory was computed.", registry=r)
        self.frames_sent = Counter("classroom_frames_sent", "Step frames sent to readers.", registry=r)
        self.rejected = Counter("classroom_rejected_requests", "Requests refused, by reason.", ["reason"], registry=r)
        self.gc_pauses = GcPauses()  # counts once the server starts
        r.register(self.gc_pauses)
