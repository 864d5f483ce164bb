"""The parts that run the model in this process: the models, the device, the probes, a class starting, speed options."""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

import numpy as np
import torch

from services.inference.diffusion.acceleration import accelerate, attention_kinds
from services.inference.diffusion.batched_step import steps_together, together
from services.inference.diffusion.denoise import Generation, denoise, predict_noise, predict_noise_together
from services.inference.diffusion.events import HostCopy, StepEvent, sync
from services.inference.diffusion.models import DiffusionModel
from services.inference.diffusion.spec import GenerationSpec
from services.inference.diffusion.tiny import ensure_tiny_model
from tests.bench.gpu_suite.plan import (
    IMAGE_MAX_LEVELS,
    IMAGE_MEAN_LEVELS,
    STATED_H100_BOUND,
    Context,
    class_specs,
    load_model,
    started_generations,
)
from tests.bench.models import build_sd15_shaped

JOINING = 4  # students who start between each two steps of a running class (`_joins`)
JOIN_STEPS = 3  # the class's steps timed each way, each time


def part_build(ctx: Context) -> dict[str, Any]:
    """The models, built from configs with random weights (nothing is downloaded)."""
    started = time.perf_counter()
    ensure_tiny_model(ctx.tiny_dir)
    if ctx.plan.model == "sd15":
        build_sd15_shaped(ctx.model_dir)
    return {"model": ctx.plan.model, "seconds": time.perf_counter() - started}


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


def part_device(ctx: Context) -> dict[str, Any]:
    """The machine, the UNet's attention, the FLOPs of one guided step and the bound they set."""
    from torch.utils.flop_counter import FlopCounterMode

    from tests.bench.test_bench_stream import machine

    model = load_model(ctx)
    report = accelerate(model, ctx.settings())
    generation = Generation(model, class_specs(ctx, 1)[0])
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
    figures["new_sizes"] = _first_calls(model, ctx)
    figures["joins"] = _joins(model, ctx)
    return figures


def _first_calls(model: DiffusionModel, ctx: Context) -> list[dict[str, Any]]:
    """A UNet call at a batch size this process has not run yet, against the same size again, by attention kind.

    A class that grows student by student meets many batch sizes; if the first call at each
    costs far more than the next (cuDNN's attention plans its kernels per shape), the class's
    first frames wait for it. The sizes differ between the two kinds, so each first call is new.
    """
    attention_was = torch.backends.cuda.cudnn_sdp_enabled()
    specs = class_specs(ctx, 9)
    rows = []
    try:
        for cudnn, counts in ((True, (3, 5)), (False, (7, 9))):
            torch.backends.cuda.enable_cudnn_sdp(cudnn)
            for count in counts:
                generations = [Generation(model, spec) for spec in specs[:count]]
                for generation in generations:
                    generation.start()
                seconds = []
                for _ in range(3):
                    sync(model.device)
                    started = time.perf_counter()
                    with torch.inference_mode():
                        predict_noise(model, generations)
                    sync(model.device)
                    seconds.append(time.perf_counter() - started)
                rows.append({"cudnn_attention": cudnn, "generations": count, "first_s": seconds[0],
                             "again_s": min(seconds[1:])})  # fmt: skip
    finally:
        torch.backends.cuda.enable_cudnn_sdp(attention_was)
    return rows


def _joins(model: DiffusionModel, ctx: Context) -> dict[str, Any]:
    """A running class's steps with students starting between them, against the same steps with none.

    The worker starts a student who joins a running class right after it queues a UNet call.
    A start that waits for the device (a copy to or from it) holds the worker until that call
    is done, and the GPU then idles for the rest of the start; a start that does not wait runs
    beside the call. The class's steps are the worker's (the UNet call, the joint step, each
    generation's rows, the last step's copies waited for once the next is queued); the starts
    are students joining with prompts of their own (tests/unit/test_device_waits.py counts a
    start's waits on the CPU: none).
    """
    students, joining, steps = ctx.plan.startup_students, JOINING, JOIN_STEPS
    generations = started_generations(model, class_specs(ctx, students, steps=5 * steps + 1))  # (warm-up and 4 runs)
    held: list[StepEvent] = []
    starts = 0

    def run(with_starts: bool) -> float:
        nonlocal held, starts
        sync(model.device)
        began = time.perf_counter()
        for _ in range(steps):
            with torch.inference_mode():
                pairs, unet = predict_noise(model, generations)
                steps_together(generations, together(pairs))
                for event in held:  # as `BatchScheduler._step`: the last step's copies, once this one is queued
                    event.copied()
                held = [g.finish_step(pair, unet, 2 * students) for g, pair in zip(generations, pairs, strict=True)]
            for spec in class_specs(ctx, joining if with_starts else 0, offset=10_000 + starts):
                Generation(model, spec).start()
                starts += 1
        sync(model.device)
        return (time.perf_counter() - began) / steps

    from tests.bench.test_bench_startup import class_start

    run(True)  # warm-up: the text encoder's first calls
    times: dict[bool, list[float]] = {False: [], True: []}
    for with_starts in (False, True, True, False):
        times[with_starts].append(run(with_starts))
    alone = class_start(model, [spec.prompt for spec in class_specs(ctx, joining, offset=20_000)], ctx.plan.size, True)
    without, beside = min(times[False]), min(times[True])
    return {
        "students": students,
        "joining_each_step": joining,
        "step_s": without,
        "step_s_with_starts": beside,
        "extra_ms_per_start": (beside - without) / joining * 1e3,
        "start_alone_ms": alone * 1e3,
    }


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


def _finish_steps(generations: list[Generation], together: bool) -> tuple[float, float, int]:
    """One step after a UNet call: (the UNet's seconds, guidance + scheduler + copies seconds, generations joined).

    Together: `batched_step.steps_together` once for the batch, each generation then
    taking its rows (as `denoise` runs a step); alone: each generation's own step.
    """
    model = generations[0].model
    noise, unet = predict_noise_together(model, generations)
    sync(model.device)
    started = time.perf_counter()
    if together:
        steps_together(generations, noise)
    joined = sum(generation.rows is not None for generation in generations)
    for generation, pair in zip(generations, noise.split(2), strict=True):
        generation.finish_step(pair, unet, batch_size=2 * len(generations))
    sync(model.device)
    return unet.seconds, time.perf_counter() - started, joined


def part_probes(ctx: Context) -> dict[str, Any]:
    """Host copies of the probes, guidance + scheduler + copies together and alone; the GPU's idle time; the VAE."""
    model = load_model(ctx)
    figures: dict[str, Any] = {"classes": []}
    for students in ctx.plan.probe_students:
        generations = started_generations(model, class_specs(ctx, students, steps=16))
        unet_s, copy_s, step_s, alone_s, joined = [], [], [], [], []
        with torch.inference_mode():
            for _ in range(6):
                pairs, _ = predict_noise(model, generations)
                sync(model.device)  # the copies alone are timed here
                started = time.perf_counter()
                copies = [HostCopy(t.unsqueeze(0)) for t in _probe_tensors(generations, pairs)]
                for copy in copies:
                    copy.numpy()
                copy_s.append(time.perf_counter() - started)
                # A step as the worker runs it (batched_step.py), then one as it ran before, one generation at a time.
                unet, seconds, count = _finish_steps(generations, together=True)
                unet_s.append(unet)
                step_s.append(seconds)
                joined.append(count)
                alone_s.append(_finish_steps(generations, together=False)[1])
        row: dict[str, Any] = {
            "students": students,
            "unet_step_s": statistics.median(unet_s[1:]),
            "probe_copies_s": statistics.median(copy_s[1:]),
            "finish_steps_s": statistics.median(step_s[1:]),
            "finish_steps_alone_s": statistics.median(alone_s[1:]),
            "joined": min(joined),
            "copied_bytes_per_step": 5 * students * generations[0].latents[0].numel() * 2,
        }
        row["copies_over_unet"] = row["probe_copies_s"] / row["unet_step_s"]
        row["together_gain"] = row["finish_steps_alone_s"] / row["finish_steps_s"]
        figures["classes"].append(row)
        ctx.save(figures)

    # The worker's own loop for a class, profiled: does the GPU wait on the host between steps?
    students = max(ctx.plan.probe_students)
    generations = started_generations(model, class_specs(ctx, students, offset=500, steps=8))
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
    generations = started_generations(model, specs)
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
    specs = class_specs(ctx, plan.speed_students, offset=700)
    reference = _pipeline_image(ctx, specs[0])
    figures: dict[str, Any] = {
        "students": plan.speed_students,
        "steps": plan.steps,
        "variants": [],
        "tolerance": {"max_levels": IMAGE_MAX_LEVELS, "mean_levels": IMAGE_MEAN_LEVELS},
    }
    for name, channels_last, mode in plan.speed_variants:
        if ctx.left() < (20 if mode == "off" else 60):  # a cold compile takes about 45 s on an H100
            figures.setdefault("not_reached", []).append(name)
            continue
        # Only the class's own bucket, as the service compiles it (into the compile cache compile_start used:
        # a bucket it compiled with the same mode is loaded from there).
        options = {
            "unet_channels_last": channels_last,
            "max_batch_size": plan.speed_students,
            "unet_compile": mode,
            "unet_compile_buckets": str(plan.speed_students),
        }
        model = load_model(ctx, **options)
        report = accelerate(model, ctx.settings(**options), backend=plan.compile_backend)
        _run_class(model, class_specs(ctx, plan.speed_students, offset=900, steps=2))  # warm-up, the class's shape
        denoising, whole, images = _run_class(model, specs)
        difference = np.abs(images[0].astype(int) - reference.astype(int))
        row = {
            "name": name,
            "channels_last": channels_last,
            "compile": mode,
            "compile_s": report.compile_seconds,
            "compiled_before": report.compiled_before,
            "cache_counts": report.cache_counts,
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

    times = measure(load_model(ctx), ctx.plan.size, ctx.plan.startup_students, repetitions=3)
    medians = {way: statistics.median(runs) for way, runs in times.items()}
    return {
        "students": ctx.plan.startup_students,
        "seconds_per_generation": medians,
        "ratio_to_before": {way: m / medians["as before"] for way, m in medians.items()},
    }
