"""What one run of the GPU suite measures (its plans, for the GPU and the smoke run), and what each part reads."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from services.inference.diffusion.denoise import Generation
from services.inference.diffusion.models import DiffusionModel
from services.inference.diffusion.spec import GenerationSpec
from services.inference.settings import InferenceSettings

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
        self.partial.write_text(json.dumps(figures, default=plain))

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


def plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path | torch.dtype | torch.device):
        return str(value)
    raise TypeError(f"not JSON: {type(value)}")


def load_model(ctx: Context, **overrides: Any) -> DiffusionModel:
    return DiffusionModel.load(ctx.settings(**overrides))


def class_specs(ctx: Context, students: int, offset: int = 0, steps: int | None = None) -> list[GenerationSpec]:
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


def started_generations(model: DiffusionModel, specs: list[GenerationSpec]) -> list[Generation]:
    generations = [Generation(model, spec) for spec in specs]
    for generation in generations:
        generation.start()
    return generations
