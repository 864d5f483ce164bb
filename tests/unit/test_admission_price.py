"""Admission by cost: every request priced in standard pictures, one request's ceiling, and turns by work."""

from __future__ import annotations

import itertools

import pytest

from services.common.api import pb
from services.inference.classroom.validation import Limits, RequestError, check_generate
from services.inference.diffusion.batching import FairTurns
from services.inference.diffusion.probes import DEFAULT_PROBES, default_probes
from services.inference.diffusion.spec import standard_work, work_of
from services.inference.settings import InferenceSettings

SETTINGS = InferenceSettings(model="shapes")
SHAPES_DEFAULT = default_probes(True)  # Shapes' VAE decodes every step's guess by default
SHAPES = Limits.for_model(SETTINGS, 64, max_steps=100)


def shapes_request(steps: int = 0, size: int = 0, include: tuple[str, ...] = ()) -> pb.GenerateRequest:
    request = pb.GenerateRequest(prompt="a red circle", num_inference_steps=steps, width=size, height=size)
    request.include.paths.extend(include)
    return request


def price(request: pb.GenerateRequest, settings: InferenceSettings = SETTINGS) -> float:
    """The request's price in standard pictures, as the server computes it."""
    spec = check_generate(request, settings, 64, limits=SHAPES, default_include=SHAPES_DEFAULT)
    return spec.work / standard_work(settings, 64, SHAPES_DEFAULT)


def test_a_standard_picture_costs_one():
    assert price(shapes_request()) == 1.0
    assert price(shapes_request(steps=25, size=64, include=tuple(SHAPES_DEFAULT))) == 1.0


def test_the_price_grows_with_steps_pixels_and_the_costly_probes():
    assert price(shapes_request(steps=50)) == 2.0
    assert price(shapes_request(size=128)) == 4.0
    # Without the decoded guess it is cheaper than the default; with the maps too, dearer.
    assert price(shapes_request(include=tuple(DEFAULT_PROBES))) == pytest.approx(1 / 1.5)
    assert price(shapes_request(include=(*SHAPES_DEFAULT, "cross_attention"))) == pytest.approx(1.25)
    # The costliest Shapes allows: 100 steps at 128 px with both costly probes.
    assert price(shapes_request(100, 128, (*SHAPES_DEFAULT, "cross_attention"))) == pytest.approx(20.0)
    # The cheap probes cost nothing extra: every step computes them anyway.
    assert work_of(10, 64, 64, frozenset({"latent"})) == work_of(10, 64, 64, frozenset({"noise_predictions"}))


def test_the_costliest_request_shapes_allows_is_under_the_ceiling():
    assert price(shapes_request(100, 128, (*SHAPES_DEFAULT, "cross_attention"))) <= SETTINGS.max_request_work


def test_one_request_has_a_ceiling_and_the_refusal_says_what_to_lower():
    strict = SETTINGS.model_copy(update={"max_request_work": 8.0})
    costly = shapes_request(100, 128, (*SHAPES_DEFAULT, "cross_attention"))
    with pytest.raises(RequestError) as caught:
        check_generate(costly, strict, 64, limits=SHAPES, default_include=SHAPES_DEFAULT)
    sentence = str(caught.value)
    assert "too much work for one request" in sentence
    assert "as long as 20 standard pictures (25 steps at 64 x 64 pixels)" in sentence
    assert "at most 8." in sentence
    # Each way out, with its number: 40 steps at 128 px (8 x 25 / 4 / 1.25), 80 px at 100 steps, or no maps.
    assert "use at most 40 steps at this size" in sentence
    assert "make it at most 80 x 80 pixels at 100 steps" in sentence
    assert "leave out the attention maps" in sentence
    # Each way out is admitted.
    for fixed in (
        shapes_request(40, 128, (*SHAPES_DEFAULT, "cross_attention")),
        shapes_request(100, 80, (*SHAPES_DEFAULT, "cross_attention")),
    ):
        assert price(fixed, strict) <= 8.0
        check_generate(fixed, strict, 64, limits=SHAPES, default_include=SHAPES_DEFAULT)


def shares(prices: dict[tuple[int, int], float], turns: int) -> dict[tuple[int, int], list[int]]:
    """Which turns each group got, out of `turns`."""
    fair, got = FairTurns(), {group: [] for group in prices}
    for turn in range(turns):
        got[fair.next(prices)].append(turn)
    return got


def test_groups_share_the_machine_by_work_not_by_steps():
    standard, large = (8, 8), (16, 16)  # Shapes at 64 and 128 px: a large step is 4 standard ones (5 with the maps)
    got = shares({standard: 1.0, large: 5.0}, 60)
    assert len(got[standard]) == 50 and len(got[large]) == 10  # equal work: 50 x 1 and 10 x 5
    # Never more than one large step in a row between standard ones.
    assert all(b - a > 1 for a, b in itertools.pairwise(got[large]))


def test_a_group_that_joins_starts_level_and_gets_no_burst():
    standard, large = (8, 8), (16, 16)
    fair = FairTurns()
    for _ in range(30):  # the large picture ran alone for a while
        assert fair.next({large: 5.0}) == large
    turns = [fair.next({standard: 1.0, large: 5.0}) for _ in range(12)]
    # The newcomer goes first (the ties go to the smaller), then the large one comes once in every six turns.
    assert turns == [standard, large, *[standard] * 5, large, *[standard] * 4]


def test_a_group_that_leaves_is_forgotten():
    fair = FairTurns()
    for _ in range(10):
        fair.next({(8, 8): 1.0, (16, 16): 4.0})
    assert fair.next({(8, 8): 1.0}) == (8, 8)
    assert fair.next({(8, 8): 1.0, (16, 16): 4.0}) == (8, 8)  # back level with the other, not ahead
