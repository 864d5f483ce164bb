"""Prometheus metrics of the inference service: queue, batching, steps, cache, streams, refusals."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


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
