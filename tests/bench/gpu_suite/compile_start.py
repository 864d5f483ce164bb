"""The compile_start part: the service started with its UNet compiled, from a cold compile cache and then a warm one.

The service is started as a container starts it (its own process), its UNet
compiled as `CLASSROOM_UNET_COMPILE=auto` compiles it on a GPU, into an empty
compile cache: the seconds until its health says SERVING. Then again with the
same cache: the seconds of a later start, which the stage's target puts at 90
at most. Through the warm service, classes of 32 and 64 students: guided steps
a second with the UNet compiled. The service's own notes in the cache folder
(`compiled.json`) give each start's compile seconds and the caches' hits and
misses. The plan compiles fewer buckets than the service does by default (two
rather than seven at 64), so the figures include an estimate for all of them
from the seconds per bucket.
"""

from __future__ import annotations

import shutil
import time
from typing import Any

import torch

from services.inference.diffusion.acceleration import buckets_up_to, compile_buckets
from services.inference.diffusion.compile_cache import read_starts
from tests.bench.gpu_suite.plan import Context
from tests.bench.gpu_suite.service_parts import bound


def _service_notes(ctx: Context) -> list[dict[str, Any]]:
    """What each start noted in the compile cache (one folder: one torch, device and model)."""
    folders = sorted(p for p in ctx.compile_cache.iterdir() if p.is_dir()) if ctx.compile_cache.exists() else []
    return [start | {"folder": folder.name} for folder in folders for start in read_starts(folder)]


def _estimates(figures: dict[str, Any], all_buckets: int) -> None:
    """Each start's seconds per bucket, and what a start compiling every default bucket would take."""
    for start in figures["starts"]:
        compiled = start.get("compile_s")
        if compiled is None or not figures["buckets"]:
            continue
        per_bucket = compiled / len(figures["buckets"])
        rest = start["seconds_to_serving"] - compiled  # the process, the imports, the model's load
        start["compile_s_per_bucket"] = per_bucket
        start["estimated_s_all_default_buckets"] = rest + per_bucket * all_buckets


def part_compile_start(ctx: Context) -> dict[str, Any]:
    """The compiled service's start from a cold then a warm cache; classes through the warm one."""
    from tests.bench.class_batching import class_service, classroom_view, measure_class

    plan = ctx.plan
    shutil.rmtree(ctx.compile_cache, ignore_errors=True)
    env = ctx.model_env() | {
        # On a GPU the service's default; on a CPU `auto` stays off, so the smoke run names the mode.
        "CLASSROOM_UNET_COMPILE": "auto" if torch.cuda.is_available() else "default",
        "CLASSROOM_UNET_COMPILE_BUCKETS": plan.compile_buckets,
        "CLASSROOM_UNET_COMPILE_BACKEND": plan.compile_backend,
        "CLASSROOM_COMPILE_CACHE_DIR": str(ctx.compile_cache),
    }
    buckets = compile_buckets(plan.compile_buckets, plan.compile_max_batch)
    all_buckets = len(buckets_up_to(plan.compile_max_batch))
    figures: dict[str, Any] = {
        "max_batch": plan.compile_max_batch,
        "buckets": list(buckets),
        "default_buckets": all_buckets,
        "backend": plan.compile_backend,
        "size": plan.size,
        "steps": plan.steps,
        "starts": [],
        "rows": [],
    }
    for cache in ("cold", "warm"):
        started = time.perf_counter()
        with class_service(env, plan.compile_max_batch, timeout=max(ctx.left(), 10)) as address:
            figures["starts"].append({"cache": cache, "seconds_to_serving": time.perf_counter() - started})
            ctx.save(figures)
            if cache == "cold":
                continue
            figures["max_batch_in_force"] = classroom_view(address).max_batch_size
            measure_class(address, 2, plan.size, plan.steps, 95_000)  # the first requests' own costs
            for offset, students in enumerate(plan.compile_students):
                row = measure_class(address, students, plan.size, plan.steps, 96_000 + 1000 * offset)
                if limit := bound(ctx):
                    row["fraction_of_bound"] = row["guided_steps_per_s"] / limit
                figures["rows"].append(row)
                ctx.save(figures)
    notes = _service_notes(ctx)
    figures["notes"] = notes
    for start, note in zip(figures["starts"], notes, strict=False):
        start["compile_s"] = note.get("seconds")
        start["compiled_before"] = note.get("compiled_before")
        start["cache_counts"] = {k: note[k] for k in note if k.endswith(("_hits", "_misses"))}
    _estimates(figures, all_buckets)
    warm = figures["starts"][-1]
    figures["warm_start_s"] = warm["seconds_to_serving"]
    figures["warm_start_within_90_s"] = warm["seconds_to_serving"] <= 90
    return figures
