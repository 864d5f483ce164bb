"""Benchmark: what the costly probes add to a denoising step (cross-attention maps, decoded guesses).

For each model and size, one generation's steps are timed (the UNet call with
its probe, guidance, the scheduler step, the decode when asked, the copies off
the device) with the cheap probes only, then with `cross_attention`, then with
`decoded_x0_preview`, the three taking turns repetition by repetition so that
the machine's drift falls on all three alike. The result is each probe's median
step time as a ratio to the run without it, in the same run, on the machine
named. Shapes at its native 64 px, the tiny SD-shaped model at 512 px.
"""

from __future__ import annotations

import os
import time

from services.inference.diffusion.denoise import Generation, denoise
from services.inference.diffusion.models import SHAPES_DIR, DiffusionModel, folder_revision
from services.inference.diffusion.probes import ALWAYS_COMPUTED
from services.inference.diffusion.spec import GenerationSpec
from tests.bench.test_bench_stream import machine, ratio_table

REPETITIONS = int(os.environ.get("BENCH_REPETITIONS", "5"))
STEPS = 10
MODES = {
    "no costly probe": ALWAYS_COMPUTED,
    "cross_attention": ALWAYS_COMPUTED | {"cross_attention"},
    "decoded_x0_preview": ALWAYS_COMPUTED | {"decoded_x0_preview"},
}


def seconds_per_step(model: DiffusionModel, include: frozenset[str], size: int) -> float:
    """One generation's steps, each as the batching runner takes it (alone in its UNet call)."""
    spec = GenerationSpec("a red circle on the left", "", 1, STEPS, 7.5, size, size, "dpm_solver_pp", include)
    generation = Generation(model, spec)
    generation.start()
    started = time.perf_counter()
    for (event,) in denoise(model, [generation]):
        event.copied()  # as the runner waits before sending a frame
    return (time.perf_counter() - started) / STEPS


def compare(name: str, model: DiffusionModel, size: int) -> str:
    for include in MODES.values():
        seconds_per_step(model, include, size)  # warm-up
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    for _ in range(REPETITIONS):
        for mode, include in MODES.items():
            times[mode].append(seconds_per_step(model, include, size))
    layers = model.cross_attention.layers
    return (
        f"\n## Costly probes: {name} at {size} px ({layers} cross-attention layers, decoder "
        f"{model.preview_decoder.name})\nmachine: {machine()}\n"
        f"{STEPS} steps of DPM-Solver++, guidance 7.5, {REPETITIONS} repetitions taking turns\n"
        + ratio_table("probes", "per step", times, "no costly probe")
    )


def test_costly_probes_on_shapes():
    model = DiffusionModel("shapes", folder_revision(SHAPES_DIR), SHAPES_DIR, device="auto", safety_checker=False)
    report = compare("Shapes", model, 64)
    print(report)
    assert "ratio" in report  # the figures are the result; no timed assertion


def test_costly_probes_on_tiny_at_512(tiny_dir):
    model = DiffusionModel("tiny", folder_revision(tiny_dir), tiny_dir, device="auto", safety_checker=False)
    report = compare("tiny (SD-shaped, random weights)", model, 512)
    print(report)
    assert "ratio" in report
