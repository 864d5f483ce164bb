"""Request checks: every bad field named, in a sentence a student understands; defaults filled in."""

import math

import pytest

from services.common.api import pb
from services.inference.classroom.validation import MAX_SEED, RequestError, check_generate, check_prompt
from services.inference.diffusion.probes import DEFAULT_PROBES, PROBES
from services.inference.settings import InferenceSettings

SETTINGS = InferenceSettings(model="tiny")


def generate(**fields) -> pb.GenerateRequest:
    include = fields.pop("include", None)
    request = pb.GenerateRequest(prompt=fields.pop("prompt", "a red fox"), **fields)
    if include is not None:
        request.include.paths.extend(include)
    return request


def violations(request: pb.GenerateRequest) -> dict[str, str]:
    with pytest.raises(RequestError) as caught:
        check_generate(request, SETTINGS, default_size=512)
    return dict(caught.value.violations)


def test_defaults_are_filled_in():
    spec = check_generate(generate(seed=5), SETTINGS, default_size=512)
    assert (spec.steps, spec.guidance_scale, spec.scheduler) == (25, 7.5, "dpm_solver_pp")
    assert (spec.width, spec.height, spec.seed) == (512, 512, 5)
    assert spec.include == DEFAULT_PROBES


def test_unset_seed_is_drawn_and_reported():
    seeds = {check_generate(generate(), SETTINGS, 512).seed for _ in range(20)}
    assert all(0 <= seed <= MAX_SEED for seed in seeds)
    assert len(seeds) > 1
    spec = check_generate(generate(), SETTINGS, 512)
    assert spec.to_proto().seed == spec.seed and spec.to_proto().HasField("seed")


def test_guidance_zero_is_kept_not_replaced_by_the_default():
    assert check_generate(generate(guidance_scale=0.0), SETTINGS, 512).guidance_scale == 0.0


def test_canonical_request_round_trips():
    spec = check_generate(generate(seed=3, width=256, height=128, include=["latent"]), SETTINGS, 512)
    request = spec.to_proto()
    assert check_generate(request, SETTINGS, 512) == spec


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"prompt": ""}, "prompt", "empty"),
        ({"prompt": "   "}, "prompt", "empty"),
        ({"prompt": "x" * 1001}, "prompt", "1001 characters"),
        ({"negative_prompt": "y" * 1001}, "negative_prompt", "negative prompt"),
        ({"num_inference_steps": 151}, "num_inference_steps", "between 1 and 150"),
        ({"num_inference_steps": -3}, "num_inference_steps", "you asked for -3"),
        ({"guidance_scale": 30.5}, "guidance_scale", "from 0 to 30"),
        ({"guidance_scale": -0.1}, "guidance_scale", "from 0 to 30"),
        ({"guidance_scale": math.nan}, "guidance_scale", "a number"),
        ({"guidance_scale": math.inf}, "guidance_scale", "a number"),
        ({"width": 100}, "width", "multiple of 8"),
        ({"height": 56}, "height", "between 64 and 1024"),
        ({"width": 1032}, "width", "between 64 and 1024"),
        ({"width": -8}, "width", "you asked for -8"),
        ({"scheduler": "karras"}, "scheduler", "ddim, pndm, lms, euler, euler_ancestral, dpm_solver_pp"),
        ({"seed": -1}, "seed", "from 0 to 4294967295"),
        ({"seed": 2**32}, "seed", "you asked for 4294967296"),
        ({"include": ["latent", "attention"]}, "include", "'attention'"),
    ],
)
def test_each_bad_field_is_named_with_a_sentence(fields, field, words):
    found = violations(generate(**fields))
    assert list(found) == [field]
    assert words in found[field]
    assert found[field].endswith(".")


def test_all_problems_are_reported_together():
    found = violations(generate(prompt="", num_inference_steps=500, width=7, scheduler="nope"))
    assert set(found) == {"prompt", "num_inference_steps", "width", "scheduler"}


def test_tokenize_accepts_the_empty_prompt_but_not_an_overlong_one():
    check_prompt("", SETTINGS, required=False)
    with pytest.raises(RequestError, match="limit is 1000"):
        check_prompt("z" * 1001, SETTINGS, required=False)


def test_every_probe_is_described():
    assert PROBES.keys() >= DEFAULT_PROBES
    assert all(description for description in PROBES.values())
