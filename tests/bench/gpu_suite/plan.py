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
    exactness_students: int  # a class whose joint step is compared with each generation's own, bit for bit
    compile_max_batch: int  # the compiled service's largest batch
    compile_buckets: str  # CLASSROOM_UNET_COMPILE_BUCKETS of the compiled service ("": 1, 2, 4, ...)
    compile_students: tuple[int, ...]  # classes through the compiled service
    parts: tuple[str, ...]  # what a run measures unless --parts says
    budgets: dict[str, float] = field(default_factory=dict)  # part -> seconds at most


# The parts in the order they run: what a stage needs most first, so a run cut short by its budget keeps it.
PART_ORDER = (
    "build",
    "device",
    "exactness",
    "compile_start",
    "stream",
    "probes",
    "batching",
    "gpu_tests",
    "speed",
    "startup",
    "class_load",
)

GPU_PLAN = Plan(
    model="sd15",
    size=512,
    steps=25,
    # Trimmed to what stage 20's targets read (32 and 64 students); 8 and 16 were measured on 2026-11-27.
    students_on=(1, 32, 64),
    students_off=(1, 32),
    # Alternating pairs: 5 could not tell 1.17 from 0.74 apart; 20 give an interval (report.py).
    stream_repetitions=20,
    probe_students=(1, 32),
    speed_students=32,
    # "compile" finds the class's bucket in the compile cache compile_start left (the same key); channels_last
    # and channels_last with CUDA graphs were measured on 2026-11-27 (0.84x, 1.34x) and are not run again.
    speed_variants=(
        ("baseline", False, "off"),
        ("compile", False, "default"),
        ("compile + CUDA graphs", False, "reduce-overhead"),
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
    exactness_students=32,
    # Two buckets, not the seven the service compiles by default at 64: the cold start of seven takes about
    # 4 minutes, more than the suite has. The warm start of seven is estimated from the per-bucket figures.
    compile_max_batch=64,
    compile_buckets="32,64",
    compile_students=(32, 64),
    # What stage 20 still reads: the compiled start (never finished inside its old 190 s: the cold start of two
    # buckets alone took 171 s on an H200), the service's class and the stream. The others were measured on an
    # H200 on 2026-12-04 (docs/benchmarks.md), the class load test on an H100 on 2026-11-27: --parts runs them.
    parts=("build", "device", "exactness", "compile_start", "batching", "stream"),
    # Realistic parts end well inside these; the whole run is cut at --budget-s (540 s).
    budgets={
        "build": 90,  # SD 1.5's 1.07 billion random weights, initialised and saved on the CPU
        "device": 40,  # with a running class's steps, students starting beside them (about 4 s on an H200)
        "exactness": 40,
        "compile_start": 360,  # a cold start (two buckets: 171 s on an H200), a warm one, classes of 32 and 64
        "stream": 80,
        "probes": 30,
        "batching": 110,
        "gpu_tests": 50,
        "speed": 120,
        "startup": 30,
        "class_load": 120,  # the service started, the lesson catalog precomputed, then 35 s of class
    },
)

SMOKE_PLAN = Plan(
    model="tiny",
    size=64,
    steps=4,
    students_on=(1, 2, 3),  # with the warm-up, four requests from the first student: past the rate limit's burst
    students_off=(1, 2),
    stream_repetitions=3,  # the fewest an interval is computed from
    probe_students=(2,),
    speed_students=2,
    speed_variants=(("baseline", False, "off"), ("all", True, "default")),
    compile_backend="eager",  # the compile path without a C++ toolchain's minutes
    gpu_tests=("tests/integration/test_generate_matches_pipeline.py::test_pndm_streams_every_timestep_it_visits",),
    class_students=6,
    class_seconds=2,
    class_catalog_collections=1,
    startup_students=2,
    exactness_students=6,
    compile_max_batch=2,
    compile_buckets="",
    compile_students=(2,),
    parts=PART_ORDER,
    # Generous: a shared 2-core machine can be several times slower than an idle one.
    budgets={
        "build": 60,
        "device": 40,
        "exactness": 60,
        "compile_start": 120,
        "batching": 120,
        "stream": 60,
        "probes": 40,
        "startup": 40,
        "gpu_tests": 60,
        "class_load": 120,
        "speed": 90,
    },
)


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

    @property
    def compile_cache(self) -> Path:
        """The compile cache the parts that compile share (compile_start empties it first)."""
        return self.work / "compile-cache"

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
            "unet_compile": "off",  # measured uncompiled unless a part says otherwise
            "compile_cache_dir": self.compile_cache,
        }
        if self.plan.model == "tiny":
            base |= {"model": "tiny", "tiny_dir": self.tiny_dir}
        else:
            base["model"] = str(self.model_dir)
        return InferenceSettings(**(base | overrides))

    def model_env(self) -> dict[str, str]:
        """The service's environment for this model, its UNet uncompiled unless a part says otherwise."""
        env = {
            "CLASSROOM_MODEL": "tiny" if self.plan.model == "tiny" else str(self.model_dir),
            "CLASSROOM_UNET_COMPILE": "off",
            "CLASSROOM_COMPILE_CACHE_DIR": str(self.compile_cache),
        }
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
