"""The exactness part: a batch's joint step (batched_step.steps_together) against each generation's own, bit for bit.

tests/unit/test_batched_step.py makes this comparison on the CPU in float32 and
float16 with a stand-in model; here it runs on the suite's device and model, in
the model's precision (float16 on a GPU), for every scheduler kind, with a class
at mixed places: schedules of two lengths, a late joiner, guidance scales apart
(0 among them) and a branch. The UNet's noise prediction is drawn at random on
the device (the comparison is of what follows the UNet).

It also counts where the joint step (its inputs, guidance, the scheduler's step, the
copies and each generation's taking of its rows) made the worker wait for the device:
every wait after a UNet call is queued leaves the GPU idle while the worker prepares the
next call (services/inference/diffusion/to_device.py). A generation's first step is counted
apart: there diffusers' schedulers search their schedule (`index_for_timestep`) unless the start set their place.
So is the class's start (`Generation.start`): a student who joins a running class is started between two
calls. tests/unit/test_device_waits.py counts the same waits on the CPU, the meta device standing in for this one.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from services.inference.diffusion.batched_step import model_inputs, steps_together
from services.inference.diffusion.denoise import Generation, guided_step
from services.inference.diffusion.events import sync
from services.inference.diffusion.models import DiffusionModel
from services.inference.diffusion.schedulers import SCHEDULERS
from services.inference.diffusion.spec import BranchSpec, GenerationSpec
from tests.bench.gpu_suite.plan import Context, load_model

# seed, steps, guidance, the batch's step it joins at: the pattern repeats to the class's size.
PATTERN = ((1, 6, 7.5, 0), (2, 6, 7.5, 0), (3, 6, 1.5, 0), (4, 8, 12.0, 0), (5, 6, 0.0, 2), (6, 6, 7.5, 2))


def _class(students: int) -> list[tuple[int, int, float, int]]:
    return [
        (seed + 10 * (i // len(PATTERN)), steps, guidance, joins)
        for i, (seed, steps, guidance, joins) in ((i, PATTERN[i % len(PATTERN)]) for i in range(students))
    ]


def _spec(scheduler: str, seed: int, steps: int, guidance: float, size: int) -> GenerationSpec:
    branch = BranchSpec(at_step=3, prompt="a blue square", negative_prompt="", guidance_scale=3.0)
    return GenerationSpec(
        prompt=f"a red circle number {seed}",
        negative_prompt="blurry" if seed % 2 else "",
        seed=seed,
        steps=steps,
        guidance_scale=guidance,
        width=size,
        height=size,
        scheduler=scheduler,
        include=frozenset(),
        branch=branch if seed % 10 == 2 else None,  # the second of each six
    )


def _started(model: DiffusionModel, scheduler: str, members: list[tuple[int, int, float, int]], size: int) -> list:
    generations = [Generation(model, _spec(scheduler, seed, steps, g, size)) for seed, steps, g, _ in members]
    for generation in generations:
        generation.start()
    return generations


@contextmanager
def counted_waits(waits: Counter[str]) -> Iterator[None]:
    """Count each synchronisation with the device inside, by the line of our code (or diffusers') that made it."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        previous = torch.cuda.get_sync_debug_mode()
        torch.cuda.set_sync_debug_mode("warn")
    else:
        previous = None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        if previous is not None:
            torch.cuda.set_sync_debug_mode(previous)
    for warning in caught:  # PyTorch's warning names the Python line that asked for the operation
        if "synchroniz" in str(warning.message):
            waits[f"{warning.filename.split('/')[-1]}:{warning.lineno}"] += 1


def compare_scheduler(model: DiffusionModel, scheduler: str, students: int, size: int) -> dict[str, Any]:
    """One scheduler kind: every row of every step, joint against alone; the mismatches and the largest difference."""
    members = _class(students)
    start_waits: Counter[str] = Counter()  # the class's starts (prompts encoded, schedules made, noise drawn)
    with counted_waits(start_waits):
        joint = _started(model, scheduler, members, size)
    alone = _started(model, scheduler, members, size)
    draw = torch.Generator(device=model.device).manual_seed(0)
    rows = joined = mismatched = 0
    largest = 0.0
    first_waits: Counter[str] = Counter()  # at a generation's first step: its place in the schedule
    waits: Counter[str] = Counter()  # at every other step
    with torch.inference_mode():
        for step in range(12):
            running = [i for i, (*_, joins) in enumerate(members) if step >= joins and not joint[i].done]
            if not running:
                break
            batch, reference = [joint[i] for i in running], [alone[i] for i in running]
            counter = first_waits if any(g.step_index == 0 for g in batch) else waits
            with counted_waits(counter):
                latents, _, _ = model_inputs(batch)
            inputs_equal = torch.equal(latents, torch.cat([g.model_input()[0] for g in reference]))
            noise = torch.randn(
                (2 * len(batch), *latents.shape[1:]), generator=draw, device=model.device, dtype=torch.float32
            ).to(model.dtype)
            with counted_waits(counter):
                steps_together(batch, noise)
                joined += sum(g.rows is not None for g in batch)
                events = [
                    generation.finish_step(pair, None, batch_size=2 * len(batch))
                    for generation, pair in zip(batch, noise.split(2), strict=True)
                ]
            for generation, other, pair, event in zip(batch, reference, noise.split(2), events, strict=True):
                expected = guided_step(other, pair.clone(), None, batch_size=2 * len(batch))
                pairs = [(generation.latents, other.latents)]
                pairs += [
                    (torch.from_numpy(a.numpy()), torch.from_numpy(b.numpy()))
                    for a, b in zip(
                        (event.latent, event.predicted_x0, *event.noise),
                        (expected.latent, expected.predicted_x0, *expected.noise),
                        strict=True,
                    )
                ]
                rows += 1
                same = inputs_equal and all(torch.equal(a, b) for a, b in pairs)
                mismatched += not same
                if not same:
                    largest = max(largest, *((a.float() - b.float()).abs().max().item() for a, b in pairs))
    sync(model.device)
    return {
        "scheduler": scheduler,
        "ancestral": SCHEDULERS[scheduler].ancestral,
        "rows": rows,
        "joined_rows": joined,
        "mismatched_rows": mismatched,
        "largest_difference": largest,
        "all_done": all(g.done for g in joint),
        "final_latents_equal": all(torch.equal(a.latents, b.latents) for a, b in zip(joint, alone, strict=True)),
        "waits_at_start": dict(start_waits),
        "waits_first_steps": dict(first_waits),
        "waits_other_steps": dict(waits),
    }


def part_exactness(ctx: Context) -> dict[str, Any]:
    """Every scheduler kind: the joint step's rows against each generation's own step, on this device, bit for bit."""
    model = load_model(ctx)
    figures: dict[str, Any] = {
        "device": str(model.device),
        "dtype": str(model.dtype),
        "students": ctx.plan.exactness_students,
        "size": ctx.plan.size,
        "schedulers": [],
    }
    for scheduler in sorted(SCHEDULERS):
        figures["schedulers"].append(compare_scheduler(model, scheduler, ctx.plan.exactness_students, ctx.plan.size))
        ctx.save(figures)
    figures["bit_equal"] = all(
        row["mismatched_rows"] == 0 and row["final_latents_equal"] and row["all_done"] for row in figures["schedulers"]
    )
    figures["rows_compared"] = int(np.sum([row["rows"] for row in figures["schedulers"]]))
    return figures
