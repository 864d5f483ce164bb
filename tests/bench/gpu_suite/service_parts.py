"""The parts that go through the service or its tests: a class batching on and off, a stream, GPU tests, class load."""

from __future__ import annotations

import math
import os
import time
from typing import Any

import numpy as np

from tests.bench.gpu_suite.plan import STATED_H100_BOUND, Context


def bound(ctx: Context) -> float | None:
    """Guided steps a second the device could make at best: the issue's H100 figure, or the counted one."""
    device = ctx.figures.get("device", {})
    # The H200 has the H100's tensor cores and clocks (989 TFLOP/s of dense fp16), with more memory bandwidth.
    if ctx.plan.model == "sd15" and any(card in str(device.get("device", "")) for card in ("H100", "H200")):
        return STATED_H100_BOUND
    return device.get("bound_steps_per_s")


def part_batching(ctx: Context) -> dict[str, Any]:
    """A class of distinct students through the service, batching on (the service's batch size) and off (1)."""
    from tests.bench.class_batching import class_service, classroom_view, measure_class

    plan, limit = ctx.plan, bound(ctx)
    figures: dict[str, Any] = {"size": plan.size, "steps": plan.steps, "rows": [], "skipped": []}
    offset = 0
    for mode, batch, students in (("on", None, plan.students_on), ("off", 1, plan.students_off)):
        with class_service(ctx.model_env(), batch) as address:
            figures[f"max_batch_{mode}"] = classroom_view(address).max_batch_size
            measure_class(address, 2, plan.size, plan.steps, 90_000 + offset)  # warm-up
            per_student = None
            for count in students:
                if per_student is not None and mode == "off" and per_student * count > ctx.left() - 10:
                    figures["skipped"].append({"mode": mode, "students": count, "estimated_s": per_student * count})
                    continue
                offset += 1000
                row = measure_class(address, count, plan.size, plan.steps, offset) | {"mode": mode}
                if limit:
                    row["fraction_of_bound"] = row["guided_steps_per_s"] / limit
                per_student = row["wall"] / count
                figures["rows"].append(row)
                ctx.save(figures)
    by = {(r["mode"], r["students"]): r for r in figures["rows"]}
    figures["gain_on_over_off"] = {
        str(count): by[("on", count)]["guided_steps_per_s"] / by[("off", count)]["guided_steps_per_s"]
        for count in plan.students_on
        if ("on", count) in by and ("off", count) in by
    }
    figures["bound_steps_per_s"] = limit
    return figures


def part_stream(ctx: Context) -> dict[str, Any]:
    """One student: the stream with every probe on against diffusers' pipeline, alternating; the ratio's interval."""
    from tests.bench.test_bench_stream import measure_stream_against_pipeline

    figures = measure_stream_against_pipeline(
        ctx.settings(), steps=ctx.plan.steps, size=ctx.plan.size, repetitions=ctx.plan.stream_repetitions
    )
    return figures | ratio_interval(figures["pipeline_s"], figures["stream_s"])


# Two-sided 95 % quantiles of Student's t by degrees of freedom (scipy's, where it is missing).
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 9: 2.262, 14: 2.145, 19: 2.093, 29: 2.045}


def _t_975(degrees: int) -> float:
    try:
        from scipy.stats import t

        return float(t.ppf(0.975, degrees))
    except ImportError:
        return T_975[max(d for d in T_975 if d <= degrees)]


def ratio_interval(pipeline_s: list[float], stream_s: list[float], target: float = 1.05) -> dict[str, Any]:
    """The stream's time over the pipeline's, with a 95 % interval, from repetitions run in alternating pairs.

    Each repetition's ratio is a pair measured a second apart, so whatever drifts
    over the run (clocks, other load) touches both: the interval is Student's t on
    the pairs' log ratios (the geometric mean ratio), and a bootstrap of the pairs
    for the ratio of the medians. It resolves the target when it lies on one side.
    """
    logs = np.log(np.asarray(stream_s) / np.asarray(pipeline_s))
    count = len(logs)
    figures: dict[str, Any] = {"pairs": count, "target": target}
    if count < 2:
        return figures | {"resolves_target": "too few repetitions"}
    mean, spread = float(logs.mean()), float(logs.std(ddof=1))
    half = _t_975(count - 1) * spread / math.sqrt(count)
    low, high = math.exp(mean - half), math.exp(mean + half)
    draw = np.random.default_rng(0)
    picks = draw.integers(0, count, size=(2000, count))
    medians = np.median(np.asarray(stream_s)[picks], axis=1) / np.median(np.asarray(pipeline_s)[picks], axis=1)
    figures |= {
        "geometric_mean_ratio": math.exp(mean),
        "ratio_ci95": [low, high],
        "median_ratio_ci95": [float(np.percentile(medians, 2.5)), float(np.percentile(medians, 97.5))],
    }
    if high <= target:
        figures["resolves_target"] = f"at most {target}"
    elif low > target:
        figures["resolves_target"] = f"above {target}"
    else:
        figures["resolves_target"] = "unresolved"
    return figures


class _Outcomes:
    """A pytest plugin that counts outcomes and names the failures."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.failed: list[str] = []

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.when == "call" or report.outcome != "passed":
            self.counts[report.outcome] = self.counts.get(report.outcome, 0) + 1
            if report.outcome == "failed":
                self.failed.append(f"{report.nodeid} ({report.when})")


def part_gpu_tests(ctx: Context) -> dict[str, Any]:
    """The tests that compare the service with diffusers' pipeline, on this machine's device."""
    import pytest

    # Only the plugins the tests use: a GPU image may hold others built for another pytest.
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    # The tests compare with diffusers' pipeline bit for bit: the UNet as the pipeline runs it.
    os.environ["CLASSROOM_UNET_COMPILE"] = "off"
    outcomes = _Outcomes()
    started = time.perf_counter()
    arguments = ["-q", "-p", "no:cacheprovider", "-p", "pytest_asyncio.plugin", "-x", *ctx.plan.gpu_tests]
    code = pytest.main(arguments, plugins=[outcomes])
    return {
        "exit_code": int(code),
        "seconds": time.perf_counter() - started,
        "outcomes": outcomes.counts,
        "failed": outcomes.failed,
        "tests": list(ctx.plan.gpu_tests),
    }


def part_class_load(ctx: Context) -> dict[str, Any]:
    """The class load test (lessons from the cache, live pictures from the tiny model) with real Redis."""
    import yaml

    from tests.bench.test_bench_classroom import measure_class_load
    from tests.frontend.conftest import LESSON_CATALOG
    from tests.support.redis_server import RedisServer

    catalog = LESSON_CATALOG
    if ctx.plan.class_catalog_collections:
        lessons = yaml.safe_load(LESSON_CATALOG.read_text())
        lessons["collections"] = lessons["collections"][: ctx.plan.class_catalog_collections]
        catalog = ctx.work / "lessons.yaml"
        catalog.write_text(yaml.safe_dump(lessons))
    redis = RedisServer(ctx.work / "redis").start()
    try:
        figures, report = measure_class_load(
            ctx.tiny_dir,
            redis.url,
            students=ctx.plan.class_students,
            duration_s=ctx.plan.class_seconds,
            catalog=catalog,
        )
    finally:
        redis.stop()
    return figures | {"report": report}
