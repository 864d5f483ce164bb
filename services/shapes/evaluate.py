"""Measuring the Shapes model: does each picture show what its prompt says.

Pictures are made by the service's own runner (the loop students watch), at
the model's default size, steps and scheduler, with fixed seeds, and judged by
`judge.py`. Reported: how often colour, shape and position are right at
guidance 7.5 on pairs seen in training and on held-out pairs, and how often
the colour is right at guidance 0 (the unconditional model, which should
ignore the prompt).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.common.shapes_judge import Verdict, judge
from services.inference.diffusion.denoise import Generation, denoise
from services.inference.diffusion.models import SHAPES_DIR, DiffusionModel, folder_revision
from services.inference.diffusion.probes import DEFAULT_PROBES
from services.inference.diffusion.spec import GenerationSpec
from services.shapes import data

_BATCH = 16
DEFAULT_STEPS = 25
DEFAULT_SCHEDULER = "dpm_solver_pp"


@dataclass(frozen=True)
class Judged:
    spec: data.ShapeSpec
    seed: int
    guidance_scale: float
    verdict: Verdict


def load(folder: Path | None = None) -> DiffusionModel:
    folder = folder or SHAPES_DIR
    return DiffusionModel("shapes", folder_revision(folder), folder, device="cpu", safety_checker=False)


def render(
    model: DiffusionModel,
    prompts: list[str],
    seeds: list[int],
    guidance_scale: float,
    steps: int = DEFAULT_STEPS,
    scheduler: str = DEFAULT_SCHEDULER,
) -> list[np.ndarray]:
    """Final pictures for each (prompt, seed), through the runner, a few generations per UNet call."""
    size = model.default_size
    pictures: list[np.ndarray] = []
    for start in range(0, len(prompts), _BATCH):
        generations = [
            Generation(model, GenerationSpec(p, "", s, steps, guidance_scale, size, size, scheduler, DEFAULT_PROBES))
            for p, s in zip(prompts[start : start + _BATCH], seeds[start : start + _BATCH], strict=True)
        ]
        for generation in generations:
            generation.start()
        for _ in denoise(model, generations):
            pass
        pictures += [g.finish(0.0, 0.0).image for g in generations]
    return pictures


def judge_prompts(model: DiffusionModel, specs: list[data.ShapeSpec], guidance_scale: float) -> list[Judged]:
    seeds = [1000 + i for i in range(len(specs))]
    pictures = render(model, [s.caption for s in specs], seeds, guidance_scale)
    return [Judged(s, seed, guidance_scale, judge(p)) for s, seed, p in zip(specs, seeds, pictures, strict=True)]


def accuracy(judged: list[Judged]) -> dict[str, float]:
    """The share of pictures whose colour, shape and position are what the prompt says."""
    n = max(1, len(judged))
    return {
        "colour": sum(j.verdict.colour == j.spec.colour for j in judged) / n,
        "shape": sum(j.verdict.shape == j.spec.shape for j in judged) / n,
        "position": sum(j.verdict.position == j.spec.position for j in judged) / n,
        "found": sum(j.verdict.found for j in judged) / n,
    }


def evaluate_model(folder: Path | None = None, prompts: int = 200) -> dict:
    """The accuracy table of the model card: seen pairs at g = 7.5 and 0, held-out pairs at g = 7.5."""
    model = load(folder)
    started = time.perf_counter()
    seen = data.evaluation_prompts(prompts, seed=0)
    held_out = data.evaluation_prompts(max(24, prompts // 8), seed=0, held_out=True)
    report = {
        "prompts": prompts,
        "steps": DEFAULT_STEPS,
        "scheduler": DEFAULT_SCHEDULER,
        "size": model.default_size,
        "seen_g7.5": accuracy(judge_prompts(model, seen, 7.5)),
        "held_out_g7.5": accuracy(judge_prompts(model, held_out, 7.5)),
        "seen_g0": accuracy(judge_prompts(model, seen, 0.0)),
    }
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report


def format_report(report: dict) -> str:
    lines = [
        f"{report['prompts']} seen-pair prompts, {report['steps']} steps of {report['scheduler']}, "
        f"{report['size']} px ({report['seconds']} s)",
        "| set | colour | shape | position |",
        "|---|---|---|---|",
    ]
    for name in ("seen_g7.5", "held_out_g7.5", "seen_g0"):
        row = report[name]
        lines.append(f"| {name} | {row['colour']:.1%} | {row['shape']:.1%} | {row['position']:.1%} |")
    return "\n".join(lines)
