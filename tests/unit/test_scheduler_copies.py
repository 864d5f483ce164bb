"""A generation's scheduler, copied from one made once: the same as diffusers' own, and its own."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from services.inference.diffusion.models import SHAPES_DIR
from services.inference.diffusion.schedulers import SCHEDULERS, _prototype, make_scheduler, new_scheduler

CONFIG = json.loads((SHAPES_DIR / "scheduler" / "scheduler_config.json").read_text())


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_a_copy_is_the_scheduler_from_config_would_be(name):
    made, copied = make_scheduler(name, CONFIG), new_scheduler(name, CONFIG)
    assert type(copied) is type(made) and dict(copied.config) == dict(made.config)
    for scheduler in (made, copied):
        scheduler.set_timesteps(25)
    assert torch.equal(copied.timesteps, made.timesteps)
    for name_of in ("alphas_cumprod", "sigmas"):
        if hasattr(made, name_of):
            assert torch.equal(getattr(copied, name_of), getattr(made, name_of)), name_of


def test_each_generation_has_its_own_and_the_first_is_never_changed():
    first = new_scheduler("dpm_solver_pp", CONFIG)
    first.set_timesteps(10)
    first.model_outputs[0] = torch.ones(1)  # state a generation's steps leave behind
    second = new_scheduler("dpm_solver_pp", CONFIG)
    assert second is not first
    assert second.num_inference_steps is None and second.model_outputs[0] is None
    second.set_timesteps(40)
    assert len(first.timesteps) == 10 and len(second.timesteps) == 40


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_a_copy_shares_no_changeable_state_with_the_first(name):
    first, copied = _prototype(name, json.dumps(CONFIG, sort_keys=True)), new_scheduler(name, CONFIG)
    assert first.__dict__.keys() == copied.__dict__.keys()
    for key, value in first.__dict__.items():
        mine = copied.__dict__[key]
        if not isinstance(value, (bool, int, float, str, type(None))):
            assert mine is not value, key  # changed in place by a step: each generation has its own
        if isinstance(value, torch.Tensor):
            assert torch.equal(mine, value) and mine.dtype == value.dtype, key
        elif isinstance(value, np.ndarray):
            np.testing.assert_array_equal(mine, value)
        else:
            assert mine == value, key


def test_another_config_gets_its_own():
    other = dict(CONFIG, beta_end=CONFIG["beta_end"] * 2)
    assert new_scheduler("ddim", other).config.beta_end == other["beta_end"]
    assert new_scheduler("ddim", CONFIG).config.beta_end == CONFIG["beta_end"]
