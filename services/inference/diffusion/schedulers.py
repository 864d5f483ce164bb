"""The schedulers a student can pick, declared as data, and how to read x0 from each."""

from __future__ import annotations

import copy
import functools
import inspect
import json
from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    LMSDiscreteScheduler,
    PNDMScheduler,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin


@dataclass(frozen=True)
class SchedulerSpec:
    name: str  # what a request sends
    display_name: str
    description: str  # one plain sentence for students
    cls: type[SchedulerMixin]
    ancestral: bool = False  # adds fresh noise at every step
    sigma_space: bool = False  # keeps x = x0 + sigma * eps
    overrides: dict[str, Any] = field(default_factory=dict)


SCHEDULERS: dict[str, SchedulerSpec] = {
    spec.name: spec
    for spec in (
        SchedulerSpec(
            "ddim",
            "DDIM",
            "Jumps straight between noise levels using the model's guess of the clean image; deterministic.",
            DDIMScheduler,
        ),
        SchedulerSpec(
            "pndm",
            "PNDM",
            "A multistep method that reuses the last few noise predictions; SD 1.x's original default.",
            PNDMScheduler,
        ),
        SchedulerSpec(
            "lms",
            "LMS",
            "Linear multistep in sigma form: blends the last four predictions (Diffusion Explainer's choice).",
            LMSDiscreteScheduler,
            sigma_space=True,
        ),
        SchedulerSpec(
            "euler",
            "Euler",
            "The simplest step along the denoising path in sigma form; deterministic.",
            EulerDiscreteScheduler,
            sigma_space=True,
        ),
        SchedulerSpec(
            "euler_ancestral",
            "Euler Ancestral",
            "Euler steps that add fresh noise each time, so the result changes with the step count.",
            EulerAncestralDiscreteScheduler,
            ancestral=True,
            sigma_space=True,
        ),
        SchedulerSpec(
            "dpm_solver_pp",
            "DPM-Solver++",
            "A higher-order solver that reaches a clean image in few steps (20 to 25); deterministic.",
            DPMSolverMultistepScheduler,
            overrides={"algorithm_type": "dpmsolver++"},
        ),
    )
}


def make_scheduler(name: str, base_config: dict[str, Any]) -> SchedulerMixin:
    """A fresh scheduler of the named kind, configured from the model's scheduler config, as diffusers makes it."""
    spec = SCHEDULERS[name]
    return spec.cls.from_config(base_config, **spec.overrides)


def new_scheduler(name: str, base_config: dict[str, Any]) -> SchedulerMixin:
    """What `make_scheduler` makes, copied from one made once per kind and config.

    `from_config` reads the signature of every scheduler class it could be: 1 to 1.4 ms
    a call on a server CPU, on the worker's thread, at every generation's start. A
    copy of an untouched one is the same scheduler: each attribute copied as deep as it
    goes (`_fresh`), about a tenth of `copy.deepcopy`'s 0.5 ms.
    """
    prototype = _prototype(name, json.dumps(base_config, sort_keys=True))
    scheduler = object.__new__(type(prototype))
    scheduler.__dict__.update((key, _fresh(value)) for key, value in prototype.__dict__.items())
    return scheduler


def _fresh(value: Any) -> Any:
    """`copy.deepcopy(value)` for what a scheduler holds: tensors cloned, lists copied, plain values shared."""
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, list):
        return [_fresh(item) for item in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return copy.deepcopy(value)  # the config, numpy arrays, and anything a later diffusers adds


@functools.lru_cache(maxsize=32)
def _prototype(name: str, config: str) -> SchedulerMixin:
    return make_scheduler(name, json.loads(config))  # never used itself, only copied


def step_kwargs(scheduler: SchedulerMixin, generator: torch.Generator) -> dict[str, Any]:
    """Extra arguments the scheduler's step takes: eta 0 for DDIM, the generator for ancestral ones."""
    accepted = inspect.signature(scheduler.step).parameters
    kwargs: dict[str, Any] = {}
    if "eta" in accepted:
        kwargs["eta"] = 0.0
    if "generator" in accepted:
        kwargs["generator"] = generator
    return kwargs


def sigma_at(scheduler: SchedulerMixin, step_index: int) -> float | None:
    """The scheduler's sigma at a step, for schedulers that have sigmas."""
    sigmas = getattr(scheduler, "sigmas", None)
    if sigmas is None or step_index >= len(sigmas):
        return None
    return float(sigmas[step_index])


def predicted_x0(
    scheduler: SchedulerMixin,
    step_output: Any,
    sample: torch.Tensor,
    model_output: torch.Tensor,
    timestep: float | torch.Tensor,
) -> torch.Tensor:
    """The model's current guess of the clean latent at this step.

    Schedulers that compute it themselves return it as `pred_original_sample`
    (DDIM, Euler, Euler Ancestral, LMS); for the others (PNDM, DPM-Solver++) it
    follows from x_t = sqrt(abar_t) * x0 + sqrt(1 - abar_t) * eps.
    """
    x0 = getattr(step_output, "pred_original_sample", None)
    if x0 is not None:
        return x0
    # Left where the scheduler keeps it (the CPU): a 0-d CPU tensor enters a GPU kernel as a plain number,
    # where moving it to the device would wait for every step queued there.
    alpha_bar = scheduler.alphas_cumprod[int(timestep)].to(torch.float32)
    signal, noise = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
    x_t, output = sample.float(), model_output.float()
    if scheduler.config.prediction_type == "v_prediction":
        x0 = signal * x_t - noise * output
    else:
        x0 = (x_t - noise * output) / signal
    return x0.to(sample.dtype)
