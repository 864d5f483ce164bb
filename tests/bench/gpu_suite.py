"""The GPU suite: every figure of the SD 1.5-shaped benchmarks in one run, within a hard time budget.

    python -m tests.bench.gpu_suite --out DIR [--smoke] [--budget-s 520] [--parts batching,speed]
                                    [--students-on 1,8,32] [--students-off 1,32]

Parts, in this order (see docs/benchmarks.md, "The GPU suite"): the models
(built from configs), the device with its FLOP bound and SDPA check, a class
batching on and off, the stream against diffusers' pipeline, the probes' host
copies with a profile of the GPU's idle time and the VAE decode batched, a
class's generations starting (as before and now), the speed options each alone
and together with their difference from the pipeline,
the GPU tests, and the class load test.

Each part runs in a child process of its own session with its own deadline: a
part that fails, runs out of memory or hangs is killed (with the services it
started) and the others' figures stand. The figures go to DIR/figures.json and
DIR/summary.md as each part ends; children's output goes to DIR/suite.log.

`--smoke` runs the same code on the `tiny` model with small sizes (the CPU's
check that the suite works, `tests/integration/test_gpu_suite_smoke.py`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from services.inference.diffusion.acceleration import accelerate, attention_kinds, compile_unet
from services.inference.diffusion.denoise import Generation, denoise, predict_noise
from services.inference.diffusion.events import HostCopy, sync
from services.inference.diffusion.models import DiffusionModel
from services.inference.diffusion.spec import GenerationSpec
from services.inference.diffusion.tiny import ensure_tiny_model
from services.inference.settings import InferenceSettings
from tests.bench.models import build_sd15_shaped

# One SD 1.5 guided step (two UNet samples at 64x64) in TFLOP, and the H100 bound the issue states (490 steps/s).
SD15_GUIDED_STEP_TFLOP = 1.6
STATED_H100_BOUND = 490.0
# Batched images may differ from the pipeline's by rounding: the tolerance tests/integration/test_batching.py uses.
IMAGE_MAX_LEVELS, IMAGE_MEAN_LEVELS = 2, 0.1


@dataclass(frozen=True)
class Plan:
    """What one run of the suite measures, and the seconds each part may take."""

    model: str  # "sd15": the SD 1.5-shaped random-weight model; "tiny"
    size: int
    steps: int
    students_on: tuple[int, ...]
    students_off: tuple[int, ...]  # one at a time is slow: its rows past the part's budget are skipped
    stream_repetitions: int
    probe_students: tuple[int, ...]  # class sizes for the host-copy measurement
    speed_students: int
    speed_variants: tuple[tuple[str, bool, str], ...]  # (name, channels_last, compile mode)
    compile_backend: str
    gpu_tests: tuple[str, ...]
    class_students: int
    class_seconds: float
    class_catalog_collections: int | None  # the test catalog's first so many collections (None: all)
    startup_students: int  # a class whose generations start together: as before, and with kept encodings
    budgets: dict[str, float] = field(default_factory=dict)  # part -> seconds at most


GPU_PLAN = Plan(
    model="sd15",
    size=512,
    steps=25,
    students_on=(1, 8, 16, 32, 64),
    students_off=(1, 8, 32, 16, 64),
    stream_repetitions=5,
    probe_students=(1, 32),
    speed_students=32,
    # In this order: a later compile reuses what an earlier one of the same graph left in inductor's cache.
    speed_variants=(
        ("baseline", False, "off"),
        ("channels_last", True, "off"),
        ("compile + CUDA graphs", False, "reduce-overhead"),
        ("all", True, "reduce-overhead"),
        ("compile", False, "default"),
    ),
    compile_backend="inductor",
    gpu_tests=(
        "tests/integration/test_generate_matches_pipeline.py",
        "tests/integration/test_batching.py::test_batched_requests_get_the_frames_they_get_alone",
        "tests/integration/test_batching.py::test_a_class_that_ends_together_is_decoded_in_one_call",
        "tests/integration/test_teacher.py::test_the_teacher_sees_the_queue_pauses_and_clears_it",
        "tests/integration/test_probes.py",
        "tests/integration/test_guidance_scale.py",
    ),
    class_students=200,
    class_seconds=35,
    class_catalog_collections=None,
    startup_students=32,
    # Realistic parts end well inside these; the speed part takes what is left, at most its own.
    budgets={
        "build": 90,  # SD 1.5's 1.07 billion random weights, initialised and saved on the CPU
        "device": 30,
        "batching": 130,
        "stream": 40,
        "probes": 30,
        "startup": 30,
        "speed": 180,
        "gpu_tests": 45,
        "class_load": 120,  # the service started, the lesson catalog precomputed, then 35 s of class
    },
)

SMOKE_PLAN = Plan(
    model="tiny",
    size=64,
    steps=4,
    students_on=(1, 2, 3),  # with the warm-up, four requests from the first student: past the rate limit's burst
    students_off=(1, 2),
    stream_repetitions=1,
    probe_students=(2,),
    speed_students=2,
    speed_variants=(("baseline", False, "off"), ("all", True, "default")),
    compile_backend="eager",  # the compile path without a C++ toolchain's minutes
    gpu_tests=("tests/integration/test_generate_matches_pipeline.py::test_pndm_streams_every_timestep_it_visits",),
    class_students=6,
    class_seconds=2,
    class_catalog_collections=1,
    startup_students=2,
    # Generous: a shared 2-core machine can be several times slower than an idle one.
    budgets={
        "build": 60,
        "device": 40,
        "batching": 120,
        "stream": 60,
        "probes": 40,
        "startup": 40,
        "gpu_tests": 60,
        "class_load": 120,
        "speed": 90,
    },
)

PART_ORDER = ("build", "device", "batching", "stream", "probes", "startup", "speed", "gpu_tests", "class_load")


@dataclass
class Context:
    """What every part may read: the plan, the folders, the figures of the parts before it."""

    plan: Plan
    work: Path  # models and scratch (not brought back)
    figures: dict[str, Any]
    deadline: float  # this part's, time.monotonic()
    partial: Path  # where the part saves what it has so far

    @property
    def model_dir(self) -> Path:
        return self.work / ("sd15-shaped" if self.plan.model == "sd15" else "tiny")

    @property
    def tiny_dir(self) -> Path:
        return self.work / "tiny"

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def save(self, figures: dict[str, Any]) -> None:
        """Keep what is measured so far: a part killed at its deadline still reports it."""
        self.partial.write_text(json.dumps(figures, default=_plain))

    def settings(self, **overrides: Any) -> InferenceSettings:
        """The service's settings for this model, computing every request (no cache, no limits)."""
        base: dict[str, Any] = {
            "host": "127.0.0.1",
            "grpc_port": 0,
            "metrics_port": 0,
            "redis_url": "",
            "single_flight": False,
            "rate_limit_per_minute": 0,
            "safety_checker": "off",
        }
        if self.plan.model == "tiny":
            base |= {"model": "tiny", "tiny_dir": self.tiny_dir}
        else:
            base["model"] = str(self.model_dir)
        return InferenceSettings(**(base | overrides))

    def model_env(self) -> dict[str, str]:
        env = {"CLASSROOM_MODEL": "tiny" if self.plan.model == "tiny" else str(self.model_dir)}
        if self.plan.model == "tiny":
            env["CLASSROOM_TINY_DIR"] = str(self.tiny_dir)
        return env


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path | torch.dtype | torch.device):
        return str(value)
    raise TypeError(f"not JSON: {type(value)}")


# -- the parts ------------------------------------------------------------------


def part_build(ctx: Context) -> dict[str, Any]:
    """The models, built from configs with random weights (nothing is downloaded)."""
    started = time.perf_counter()
    ensure_tiny_model(ctx.tiny_dir)
    if ctx.plan.model == "sd15":
        build_sd15_shaped(ctx.model_dir)
    return {"model": ctx.plan.model, "seconds": time.perf_counter() - started}


def _load(ctx: Context, **overrides: Any) -> DiffusionModel:
    return DiffusionModel.load(ctx.settings(**overrides))


def _matmul_tflops(device: torch.device) -> float:
    """A large matrix product's speed: what the card (or CPU) does at best, in its precision."""
    n, dtype, repeats = (8192, torch.float16, 20) if device.type == "cuda" else (768, torch.float32, 5)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    sync(device)
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - started) / 1e12


def _class_specs(ctx: Context, students: int, offset: int = 0, steps: int | None = None) -> list[GenerationSpec]:
    return [
        GenerationSpec(
            prompt=f"a watercolor of animal number {offset + i}",
            negative_prompt="",
            seed=offset + i,
            steps=steps or ctx.plan.steps,
            guidance_scale=7.5,
            width=ctx.plan.size,
            height=ctx.plan.size,
            scheduler="dpm_solver_pp",
            include=frozenset({"latent_preview"}),
        )
        for i in range(students)
    ]


def part_device(ctx: Context) -> dict[str, Any]:
    """The machine, the UNet's attention, the FLOPs of one guided step and the bound they set."""
    from torch.utils.flop_counter import FlopCounterMode

    from tests.bench.test_bench_stream import machine

    model = _load(ctx)
    report = accelerate(model, ctx.settings())
    generation = Generation(model, _class_specs(ctx, 1)[0])
    generation.start()
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        predict_noise(model, [generation])
    step_tflop = counter.get_total_flops() / 1e12
    # SDPA in use: one scaled_dot_product_attention call per attention layer and UNet call.
    with torch.inference_mode(), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        predict_noise(model, [generation])
    sdpa_calls = sum(event.name == "aten::scaled_dot_product_attention" for event in profile.events())
    attention_layers = len(model.unet.attn_processors)
    peak = _matmul_tflops(model.device)
    figures: dict[str, Any] = {
        "machine": machine(),
        "device": torch.cuda.get_device_name(model.device) if model.device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "dtype": str(model.dtype),
        "attention": attention_kinds(model.unet),
        "attention_layers": attention_layers,
        "sdpa_calls": sdpa_calls,
        "sdpa": sdpa_calls == attention_layers,
        "unet_parameters": sum(p.numel() for p in model.unet.parameters()),
        "guided_step_tflop": step_tflop,
        "matmul_tflops": peak,
        "bound_steps_per_s": peak / step_tflop if step_tflop else None,
        "max_batch_size": report.max_batch_size,
        "max_batch_source": report.max_batch_source,
        "bytes_per_generation": report.bytes_per_generation,
        "free_bytes": report.free_bytes,
    }
    if model.device.type == "cuda":
        _, total = torch.cuda.mem_get_info(model.device)
        figures |= {"gpu_total_bytes": total, "model_bytes": torch.cuda.memory_allocated(model.device)}
    if ctx.plan.model == "sd15":
        figures["stated_bound_steps_per_s"] = STATED_H100_BOUND
    return figures


def _bound(ctx: Context) -> float | None:
    device = ctx.figures.get("device", {})
    if ctx.plan.model == "sd15" and "H100" in str(device.get("device", "")):
        return STATED_H100_BOUND
    return device.get("bound_steps_per_s")


def part_batching(ctx: Context) -> dict[str, Any]:
    """A class of distinct students through the service, batching on (the service's batch size) and off (1)."""
    from tests.bench.class_batching import class_service, classroom_view, measure_class

    plan, bound = ctx.plan, _bound(ctx)
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
                if bound:
                    row["fraction_of_bound"] = row["guided_steps_per_s"] / bound
                per_student = row["wall"] / count
                figures["rows"].append(row)
                ctx.save(figures)
    by = {(r["mode"], r["students"]): r for r in figures["rows"]}
    figures["gain_on_over_off"] = {
        str(count): by[("on", count)]["guided_steps_per_s"] / by[("off", count)]["guided_steps_per_s"]
        for count in plan.students_on
        if ("on", count) in by and ("off", count) in by
    }
    figures["bound_steps_per_s"] = bound
    return figures


def part_stream(ctx: Context) -> dict[str, Any]:
    """One student: the gRPC stream with every probe on against diffusers' pipeline."""
    from tests.bench.test_bench_stream import measure_stream_against_pipeline

    return measure_stream_against_pipeline(
        ctx.settings(), steps=ctx.plan.steps, size=ctx.plan.size, repetitions=ctx.plan.stream_repetitions
    )


def _started(model: DiffusionModel, specs: list[GenerationSpec]) -> list[Generation]:
    generations = [Generation(model, spec) for spec in specs]
    for generation in generations:
        generation.start()
    return generations


def _probe_tensors(generations: list[Generation], pairs: list[torch.Tensor]) -> list[torch.Tensor]:
    """The five tensors a step copies per student: latent, x0 (a stand-in of its size), the three noises."""
    tensors = []
    for generation, pair in zip(generations, pairs, strict=True):
        unconditional, conditional = pair.chunk(2)
        guided = unconditional + 7.5 * (conditional - unconditional)
        tensors += [generation.latents, generation.latents.clone(), unconditional, conditional, guided]
    return tensors


def _gpu_busy(profile: Any, wall_s: float) -> dict[str, Any]:
    """From a profile: the share of the wall time some kernel ran, and the largest gap between kernels."""
    spans = sorted(
        (event.time_range.start, event.time_range.end)
        for event in profile.events()
        if getattr(event, "device_type", None) == torch.autograd.DeviceType.CUDA
    )
    busy, gaps, end = 0.0, [], None
    for start, stop in spans:
        if end is None or start > end:
            if end is not None:
                gaps.append(start - end)
            busy += stop - start
            end = stop
        elif stop > end:
            busy += stop - end
            end = stop
    return {
        "kernels": len(spans),
        "gpu_busy_fraction": busy / 1e6 / wall_s if wall_s else None,
        "largest_gap_ms": max(gaps) / 1e3 if gaps else 0.0,
        "gaps_over_1ms": sum(gap > 1e3 for gap in gaps),
    }


def part_probes(ctx: Context) -> dict[str, Any]:
    """Host copies of the probes per step against the UNet step; the GPU's idle time; the VAE decode batched."""
    model = _load(ctx)
    figures: dict[str, Any] = {"classes": []}
    for students in ctx.plan.probe_students:
        generations = _started(model, _class_specs(ctx, students, steps=8))
        unet_s, copy_s, step_s = [], [], []
        with torch.inference_mode():
            for _ in range(6):
                pairs, seconds = predict_noise(model, generations)
                sync(model.device)  # the copies alone are timed below
                unet_s.append(seconds.seconds)
                started = time.perf_counter()
                copies = [HostCopy(t.unsqueeze(0)) for t in _probe_tensors(generations, pairs)]
                for copy in copies:
                    copy.numpy()
                copy_s.append(time.perf_counter() - started)
                started = time.perf_counter()
                for generation, pair in zip(generations, pairs, strict=True):
                    generation.finish_step(pair, seconds, batch_size=2 * students)
                sync(model.device)
                step_s.append(time.perf_counter() - started)
        row: dict[str, Any] = {
            "students": students,
            "unet_step_s": statistics.median(unet_s[1:]),
            "probe_copies_s": statistics.median(copy_s[1:]),
            "finish_steps_s": statistics.median(step_s[1:]),
            "copied_bytes_per_step": 5 * students * generations[0].latents[0].numel() * 2,
        }
        row["copies_over_unet"] = row["probe_copies_s"] / row["unet_step_s"]
        figures["classes"].append(row)
        ctx.save(figures)

    # The worker's own loop for a class, profiled: does the GPU wait on the host between steps?
    students = max(ctx.plan.probe_students)
    generations = _started(model, _class_specs(ctx, students, offset=500, steps=8))
    activities = [torch.profiler.ProfilerActivity.CPU]
    if model.device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.inference_mode():
        steps = denoise(model, generations)
        next(steps)  # warm-up outside the profile
        with torch.profiler.profile(activities=activities) as profile:
            started = time.perf_counter()
            for _ in range(5):
                next(steps)
            sync(model.device)
            wall = time.perf_counter() - started
    figures["profile"] = {"students": students, "steps": 5, "wall_s": wall}
    if model.device.type == "cuda":
        figures["profile"] |= _gpu_busy(profile, wall)
    figures["profile"]["top_ops"] = profile.key_averages().table(
        sort_by="device_time_total" if model.device.type == "cuda" else "cpu_time_total", row_limit=12
    )
    ctx.save(figures)

    # The VAE decode of the students who finish in the same step: one at a time, or one call.
    with torch.inference_mode():
        latents = torch.cat([g.latents for g in generations]) / model.vae.config.scaling_factor
        model.vae.decode(latents[:1], return_dict=False)
        sync(model.device)
        started = time.perf_counter()
        for i in range(students):
            model.vae.decode(latents[i : i + 1], return_dict=False)
        sync(model.device)
        one_by_one = time.perf_counter() - started
        model.vae.decode(latents, return_dict=False)
        sync(model.device)
        started = time.perf_counter()
        model.vae.decode(latents, return_dict=False)
        sync(model.device)
        batched = time.perf_counter() - started
    figures["vae_decode"] = {
        "students": students,
        "one_by_one_s": one_by_one,
        "batched_s": batched,
        "gain": one_by_one / batched,
    }
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


def _pipeline_image(ctx: Context, spec: GenerationSpec) -> np.ndarray:
    """Diffusers' pipeline on the same model, seed and settings, as the tests run it (no speed option)."""
    from diffusers import StableDiffusionPipeline

    from services.inference.diffusion.models import device_and_dtype
    from tests.integration.helpers import request, run_pipeline

    folder = ctx.tiny_dir if ctx.plan.model == "tiny" else ctx.model_dir
    device, dtype = device_and_dtype("auto")
    pipe = StableDiffusionPipeline.from_pretrained(
        folder, safety_checker=None, requires_safety_checker=False, torch_dtype=dtype
    ).to(device)
    pipe.set_progress_bar_config(disable=True)
    message = request(
        spec.prompt,
        seed=spec.seed,
        num_inference_steps=spec.steps,
        guidance_scale=spec.guidance_scale,
        width=spec.width,
        height=spec.height,
        scheduler=spec.scheduler,
    )
    scheduler_config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    image, _ = run_pipeline(pipe, scheduler_config, message)
    return image


def _run_class(model: DiffusionModel, specs: list[GenerationSpec]) -> tuple[float, float, list[np.ndarray]]:
    """The worker's loop for a class that starts together: (denoising seconds, whole seconds, images)."""
    started = time.perf_counter()
    generations = _started(model, specs)
    denoising = 0.0
    step_started = time.perf_counter()
    for _ in denoise(model, generations):
        sync(model.device)
        denoising += time.perf_counter() - step_started
        step_started = time.perf_counter()
    with torch.inference_mode():
        images = [generation.finish(0.0, 0.0).image for generation in generations]
    return denoising, time.perf_counter() - started, images


def part_speed(ctx: Context) -> dict[str, Any]:
    """Each speed option alone and together: compile time, guided steps/s for a class, difference from the pipeline."""
    plan = ctx.plan
    specs = _class_specs(ctx, plan.speed_students, offset=700)
    reference = _pipeline_image(ctx, specs[0])
    figures: dict[str, Any] = {
        "students": plan.speed_students,
        "steps": plan.steps,
        "variants": [],
        "tolerance": {"max_levels": IMAGE_MAX_LEVELS, "mean_levels": IMAGE_MEAN_LEVELS},
    }
    for name, channels_last, mode in plan.speed_variants:
        if ctx.left() < 20:
            figures.setdefault("not_reached", []).append(name)
            continue
        model = _load(ctx, unet_channels_last=channels_last, max_batch_size=plan.speed_students)
        accelerate(model, ctx.settings(unet_channels_last=channels_last, max_batch_size=plan.speed_students))
        compile_s = 0.0
        if mode != "off":
            # Only the class's own bucket here; the service compiles every bucket up to its batch at start-up.
            model.unet, compile_s = compile_unet(model, mode, (plan.speed_students,), backend=plan.compile_backend)
        _run_class(model, _class_specs(ctx, plan.speed_students, offset=900, steps=2))  # warm-up, the class's shape
        denoising, whole, images = _run_class(model, specs)
        difference = np.abs(images[0].astype(int) - reference.astype(int))
        row = {
            "name": name,
            "channels_last": channels_last,
            "compile": mode,
            "compile_s": compile_s,
            "denoising_s": denoising,
            "whole_s": whole,
            "guided_steps_per_s": len(specs) * plan.steps / denoising,
            "image_max_difference": int(difference.max()),
            "image_mean_difference": float(difference.mean()),
        }
        row["within_tolerance"] = (
            row["image_max_difference"] <= IMAGE_MAX_LEVELS and row["image_mean_difference"] < IMAGE_MEAN_LEVELS
        )
        figures["variants"].append(row)
        ctx.save(figures)
        del model
        torch._dynamo.reset()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    baseline = next((v for v in figures["variants"] if v["name"] == "baseline"), None)
    if baseline:
        for row in figures["variants"]:
            row["gain"] = row["guided_steps_per_s"] / baseline["guided_steps_per_s"]
    return figures


def part_startup(ctx: Context) -> dict[str, Any]:
    """A class's generations started together (texts encoded, schedulers made, noise): as before against now."""
    from tests.bench.test_bench_startup import measure

    times = measure(_load(ctx), ctx.plan.size, ctx.plan.startup_students, repetitions=3)
    medians = {way: statistics.median(runs) for way, runs in times.items()}
    return {
        "students": ctx.plan.startup_students,
        "seconds_per_generation": medians,
        "ratio_to_before": {way: m / medians["as before"] for way, m in medians.items()},
    }


PARTS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "build": part_build,
    "device": part_device,
    "batching": part_batching,
    "stream": part_stream,
    "probes": part_probes,
    "startup": part_startup,
    "gpu_tests": part_gpu_tests,
    "class_load": part_class_load,
    "speed": part_speed,
}


# -- running the parts ---------------------------------------------------------------


def _child(name: str, ctx: Context, result: Path, log: Path) -> None:
    """In the forked child: a session of its own (so its services die with it), output to the log."""
    os.setsid()
    descriptor = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.dup2(descriptor, 1)
    os.dup2(descriptor, 2)
    print(f"\n===== {name} =====", flush=True)
    try:
        outcome = {"status": "ok", "figures": PARTS[name](ctx)}
    except BaseException:  # whatever happened, the part reports it and the suite goes on
        traceback.print_exc()
        outcome = {"status": "failed", "error": traceback.format_exc()[-2000:]}
    with contextlib.suppress(Exception):
        result.write_text(json.dumps(outcome, default=_plain))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run_part(name: str, ctx: Context, log: Path) -> dict[str, Any]:
    """Run one part in a child process until it ends or its deadline passes (then it is killed)."""
    result = ctx.work / f"{name}.result.json"
    for stale in (result, ctx.partial):
        stale.unlink(missing_ok=True)
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        _child(name, ctx, result, log)
    timed_out = False
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() > ctx.deadline:
            timed_out = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            break
        time.sleep(0.2)
    if result.exists():
        outcome = json.loads(result.read_text())
    else:
        outcome = {
            "status": "timed out" if timed_out else "died",
            "error": f"no result after {ctx.deadline - started:.0f} s",
        }
    if "figures" not in outcome and ctx.partial.exists():
        outcome["figures"] = json.loads(ctx.partial.read_text()) | {"partial": True}
    outcome["seconds"] = time.monotonic() - started
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.gpu_suite", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for figures.json, summary.md, suite.log")
    parser.add_argument("--smoke", action="store_true", help="the tiny model, small sizes: the CPU's check")
    parser.add_argument("--budget-s", type=float, help="the whole suite's seconds (520; 400 with --smoke)")
    parser.add_argument("--parts", help=f"comma-separated, from {','.join(PART_ORDER)} (default: all)")
    parser.add_argument("--work", type=Path, help="models and scratch (default: a temporary folder)")
    parser.add_argument("--students-on", help="class sizes with batching on, e.g. 1,8,32 (default: the plan's)")
    parser.add_argument("--students-off", help="class sizes with batching off, e.g. 1,32 (default: the plan's)")
    args = parser.parse_args(argv)
    # Children are forked: the parent must never initialise CUDA (this check does not).
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    plan = SMOKE_PLAN if args.smoke else GPU_PLAN
    for flag, name in ((args.students_on, "students_on"), (args.students_off, "students_off")):
        if flag:
            plan = replace(plan, **{name: tuple(int(n) for n in flag.split(","))})
    budget = args.budget_s or (400.0 if args.smoke else 520.0)
    parts = args.parts.split(",") if args.parts else list(PART_ORDER)
    if unknown := set(parts) - set(PART_ORDER):
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    if "build" not in parts:
        parts.insert(0, "build")  # cheap when the models are there already
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu-suite-"))
    work.mkdir(parents=True, exist_ok=True)
    log = args.out / "suite.log"
    log.write_text("")
    started = time.monotonic()
    end = started + budget
    figures: dict[str, Any] = {
        "suite": {
            "smoke": args.smoke,
            "budget_s": budget,
            "plan": asdict(plan),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "parts": {},
        }
    }
    for name in (p for p in PART_ORDER if p in parts):
        left = end - time.monotonic()
        if left < 10:
            figures["suite"]["parts"][name] = {"status": "not reached", "seconds": 0.0}
            continue
        deadline = time.monotonic() + min(plan.budgets.get(name, left), left - 3)
        ctx = Context(plan=plan, work=work, figures=figures, deadline=deadline, partial=work / f"{name}.partial.json")
        outcome = run_part(name, ctx, log)
        figures["suite"]["parts"][name] = {k: v for k, v in outcome.items() if k != "figures"}
        if "figures" in outcome:
            figures[name] = outcome["figures"]
        print(f"{name}: {outcome['status']} in {outcome['seconds']:.0f} s", flush=True)
        write_figures(args.out, figures)
    figures["suite"]["seconds"] = time.monotonic() - started
    write_figures(args.out, figures)
    print(f"suite: {figures['suite']['seconds']:.0f} s; figures in {args.out}", flush=True)
    return 0 if all(p["status"] == "ok" for p in figures["suite"]["parts"].values()) else 1


def write_figures(out: Path, figures: dict[str, Any]) -> None:
    (out / "figures.json").write_text(json.dumps(figures, indent=1, default=_plain))
    (out / "summary.md").write_text(summary(figures))


# -- the summary ----------------------------------------------------------------------


def _f(value: Any, spec: str = ".2f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def summary(figures: dict[str, Any]) -> str:
    """The figures as markdown, section by section, for docs/benchmarks.md."""
    suite, device = figures["suite"], figures.get("device", {})
    lines = [
        f"# GPU suite{' (smoke)' if suite['smoke'] else ''}: {device.get('device', 'device not measured')}",
        "",
        f"{device.get('machine', '')}; started {suite['started']}; budget {suite['budget_s']:.0f} s; "
        f"model {suite['plan']['model']}, {suite['plan']['size']} px, {suite['plan']['steps']} steps",
        "",
    ]
    lines += _table(
        ["part", "status", "seconds"], [[n, p["status"], _f(p["seconds"], ".0f")] for n, p in suite["parts"].items()]
    )
    if device:
        lines += [
            "",
            "## Device",
            "",
            f"- {device['dtype']}; attention processors: {', '.join(device['attention'])}; SDPA calls in one UNet "
            f"call: {device['sdpa_calls']} for {device['attention_layers']} attention layers "
            f"(all SDPA: {device['sdpa']}); "
            f"UNet {device['unet_parameters'] / 1e6:.0f} M parameters",
            f"- one guided step: {device['guided_step_tflop'] * 1e3:.1f} GFLOP (counted); a large matrix product: "
            f"{device['matmul_tflops']:.3g} TFLOP/s; bound {_f(device['bound_steps_per_s'], '.1f')} guided "
            f"steps/s (stated for the H100: {device.get('stated_bound_steps_per_s', '-')})",
            f"- max batch {device['max_batch_size']} ({device['max_batch_source']}; "
            f"{device['bytes_per_generation'] / 2**30:.2f} GiB a generation, "
            f"{device['free_bytes'] / 2**30:.1f} GiB free)",
        ]
    if batching := figures.get("batching"):
        lines += ["", f"## A class batching on (batch {batching.get('max_batch_on')}) and off", ""]
        lines += _table(
            [
                "students",
                "batching",
                "guided steps/s",
                "of bound",
                "first frame p50 / p99 s",
                "image p50 / p99 s",
                "GPU memory peak GiB",
            ],
            [
                [
                    str(r["students"]),
                    r["mode"],
                    _f(r["guided_steps_per_s"], ".1f"),
                    _f(r.get("fraction_of_bound"), ".1%"),
                    f"{_f(r['ttff_p50'])} / {_f(r['ttff_p99'])}",
                    f"{_f(r['ttlf_p50'])} / {_f(r['ttlf_p99'])}",
                    _f(r["gpu_memory_peak_bytes"] / 2**30, ".1f"),
                ]
                for r in batching["rows"]
            ],
        )
        gains = ", ".join(f"{n}: {g:.2f}x" for n, g in batching.get("gain_on_over_off", {}).items())
        lines += ["", f"On over off, by students: {gains or '-'}"]
        for skipped in batching.get("skipped", []):
            lines.append(f"Skipped (time): {skipped['mode']} at {skipped['students']}, ~{skipped['estimated_s']:.0f} s")
    if stream := figures.get("stream"):
        lines += [
            "",
            "## One student: the stream against diffusers' pipeline",
            "",
            f"pipeline median {_f(stream.get('pipeline_median_s'), '.3f')} s, stream median "
            f"{_f(stream.get('stream_median_s'), '.3f')} s, stream/pipeline **{_f(stream.get('ratio'), '.3f')}** "
            f"({stream.get('steps')} steps, {stream.get('size')} px)",
        ]
    if probes := figures.get("probes"):
        lines += ["", "## Probes copied to the host, per step", ""]
        lines += _table(
            ["students", "UNet step ms", "probe copies ms", "copies / UNet", "guidance+scheduler+copies ms", "bytes"],
            [
                [
                    str(r["students"]),
                    _f(r["unet_step_s"] * 1e3, ".1f"),
                    _f(r["probe_copies_s"] * 1e3, ".2f"),
                    _f(r["copies_over_unet"], ".1%"),
                    _f(r["finish_steps_s"] * 1e3, ".1f"),
                    str(r["copied_bytes_per_step"]),
                ]
                for r in probes.get("classes", [])
            ],
        )
        if profile := probes.get("profile"):
            lines += [
                "",
                f"Profile of {profile['steps']} steps at {profile['students']} students: wall "
                f"{profile['wall_s'] * 1e3:.0f} ms; GPU busy {_f(profile.get('gpu_busy_fraction'), '.1%')}; "
                f"largest gap between kernels {_f(profile.get('largest_gap_ms'), '.2f')} ms; gaps over 1 ms: "
                f"{profile.get('gaps_over_1ms', '-')}",
                "",
                "```",
                profile.get("top_ops", ""),
                "```",
            ]
        if vae := probes.get("vae_decode"):
            lines += [
                "",
                f"VAE decode of {vae['students']} finished latents: one at a time {vae['one_by_one_s']:.3f} s, "
                f"one call {vae['batched_s']:.3f} s ({vae['gain']:.2f}x)",
            ]
    if startup := figures.get("startup"):
        lines += ["", f"## A class of {startup['students']} starting together, per generation", ""]
        lines += _table(
            ["start", "ms a generation", "ratio to as before"],
            [
                [way, _f(seconds * 1e3, ".2f"), _f(startup["ratio_to_before"][way], ".2f")]
                for way, seconds in startup["seconds_per_generation"].items()
            ],
        )
    if tests := figures.get("gpu_tests"):
        lines += [
            "",
            "## GPU tests",
            "",
            f"{tests['outcomes']} in {tests['seconds']:.0f} s; exit code "
            f"{tests['exit_code']}; failed: {', '.join(tests['failed']) or 'none'}",
        ]
    if load := figures.get("class_load"):
        lines += ["", f"## A class of {load['students']} for {load['duration_s']:.0f} s", "", load.get("report", "")]
    if speed := figures.get("speed"):
        lines += ["", f"## Speed options, a class of {speed['students']} ({speed['steps']} steps)", ""]
        lines += _table(
            [
                "option",
                "compile s (one bucket)",
                "guided steps/s",
                "gain",
                "image difference max / mean",
                "within the tests' tolerance",
            ],
            [
                [
                    v["name"],
                    _f(v["compile_s"], ".0f"),
                    _f(v["guided_steps_per_s"], ".1f"),
                    _f(v.get("gain"), ".2f"),
                    f"{v['image_max_difference']} / {v['image_mean_difference']:.3f}",
                    str(v["within_tolerance"]),
                ]
                for v in speed["variants"]
            ],
        )
        if speed.get("not_reached"):
            lines.append(f"Not reached (time): {', '.join(speed['not_reached'])}")
    for name, part in suite["parts"].items():
        if part.get("error"):
            lines += ["", f"## {name}: {part['status']}", "", "```", part["error"], "```"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
