"""Benchmark: a generation's start (its texts encoded, its scheduler and starting noise).

A class of 32 starting at once: each generation's `start()` runs on the worker's
thread, between UNet calls, so every millisecond of it is a millisecond the whole
class's batch waits. The model keeps recent prompts' text encodings
(`DiffusionModel.encode`), so the usual empty negative prompt, and a prompt a
classmate or a lesson already used, cost no text encoder run; and each
generation's scheduler is a copy of one made once (`new_scheduler`), not made
from its config. Measured in the same run, repetitions taking turns: as before
(every text encoded anew, every scheduler from its config: the baseline), 32 new
prompts with "" kept, and the same 32 prompts again. Shapes at 64 px, and the
tiny SD-shaped model (SD's text encoder shape, CLIP's vocabulary) at 512 px.
"""

from __future__ import annotations

import os
import time

from services.inference.diffusion import denoise as runner
from services.inference.diffusion.denoise import Generation
from services.inference.diffusion.events import sync
from services.inference.diffusion.models import SHAPES_DIR, DiffusionModel, folder_revision
from services.inference.diffusion.schedulers import make_scheduler, new_scheduler
from services.inference.diffusion.spec import GenerationSpec
from tests.bench.test_bench_stream import machine, ratio_table

REPETITIONS = int(os.environ.get("BENCH_REPETITIONS", "5"))
CLASS = 32


def class_start(model: DiffusionModel, prompts: list[str], size: int, keep: bool) -> float:
    """Seconds per generation to start a class with these prompts (`keep`: now; else as before)."""
    runner.new_scheduler = new_scheduler if keep else make_scheduler  # as before: every scheduler from its config
    try:
        started = time.perf_counter()
        for prompt in prompts:
            if not keep:
                model._kept_encodings.cache_clear()  # as before: every text encoded anew
            spec = GenerationSpec(prompt, "", 1, 25, 7.5, size, size, "dpm_solver_pp", frozenset({"latent_preview"}))
            Generation(model, spec).start()
        sync(model.device)  # on a GPU: the texts' encoding and the copies the starts queued
        return (time.perf_counter() - started) / len(prompts)
    finally:
        runner.new_scheduler = new_scheduler


Times = dict[str, list[float]]


def measure(model: DiffusionModel, size: int, students: int = CLASS, repetitions: int = REPETITIONS) -> Times:
    """Seconds per generation for a class starting, each way, the ways taking turns repetition by repetition."""
    times: dict[str, list[float]] = {"as before": [], 'new prompts, "" kept': [], "prompts kept": []}
    class_start(model, ["warm-up"], size, keep=False)
    class_start(model, ["warm-up"], size, keep=True)
    for repetition in range(repetitions):
        prompts = [f"a red circle number {student} of round {repetition}" for student in range(students)]
        times["as before"].append(class_start(model, prompts, size, keep=False))
        model._kept_encodings.cache_clear()
        model.encode("")
        times['new prompts, "" kept'].append(class_start(model, prompts, size, keep=True))
        times["prompts kept"].append(class_start(model, prompts, size, keep=True))
    return times


def compare(name: str, model: DiffusionModel, size: int) -> str:
    times = measure(model, size)
    return (
        f"\n## A generation's start: {name} at {size} px, a class of {CLASS}\nmachine: {machine()}\n"
        f"{REPETITIONS} repetitions taking turns\n"
        + ratio_table("start", "per generation", times, "as before", digits=2, ratio_digits=2)
    )


def test_a_class_starts_with_kept_encodings_on_shapes():
    model = DiffusionModel("shapes", folder_revision(SHAPES_DIR), SHAPES_DIR, device="auto", safety_checker=False)
    report = compare("Shapes", model, 64)
    print(report)
    assert "ratio" in report  # the figures are the result; no timed assertion


def test_a_class_starts_with_kept_encodings_on_tiny(tiny_dir):
    model = DiffusionModel("tiny", folder_revision(tiny_dir), tiny_dir, device="auto", safety_checker=False)
    report = compare("tiny", model, 512)
    print(report)
    assert "ratio" in report
