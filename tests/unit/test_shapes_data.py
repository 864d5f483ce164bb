"""The Shapes data set and its judge: exact captions, and a judge that reads drawn pictures right."""

import random

import numpy as np
import pytest

from services.common.shapes_judge import judge
from services.shapes import data


def test_captions_follow_the_grammar():
    assert data.caption_of("red", "circle", "on the left") == "a red circle on the left"
    assert data.caption_of("orange", "star") == "an orange star"
    assert data.caption_of("orange", "star", "at the top", "large") == "a large orange star at the top"
    rng = random.Random(3)
    for _ in range(200):
        words = data.sample_spec(rng).caption.split()
        assert words[0] in ("a", "an")
        assert set(words) & set(data.PALETTE) and set(words) & set(data.SHAPES)


def test_held_out_pairs_never_appear_in_training():
    rng = random.Random(0)
    pairs = {(s.colour, s.shape) for s in (data.sample_spec(rng) for _ in range(3000))}
    assert not pairs & data.HELD_OUT_PAIRS
    assert len(pairs) == len(data.PALETTE) * len(data.SHAPES) - len(data.HELD_OUT_PAIRS)


def test_a_drawing_has_the_palette_colour_where_the_caption_says():
    spec = data.ShapeSpec("blue", "square", "", "on the left", data.POSITIONS["on the left"])
    picture = np.asarray(data.draw(spec, 64))
    assert picture.shape == (64, 64, 3)
    assert picture[32, 16].tolist() == list(data.PALETTE["blue"])  # the centre of the square
    assert picture[32, 48].tolist() == list(data.BACKGROUND)  # the right half is empty


def test_the_judge_reads_every_drawn_picture_right():
    rng = random.Random(7)
    for _ in range(300):
        spec = data.sample_spec(rng, allow_held_out=True)
        verdict = judge(np.asarray(data.draw(spec, 64)))
        assert (verdict.colour, verdict.shape) == (spec.colour, spec.shape), spec
        if spec.position:
            assert verdict.position == spec.position, spec


def test_the_judge_finds_nothing_on_an_empty_picture():
    empty = np.full((64, 64, 3), data.BACKGROUND, dtype=np.uint8)
    assert not judge(empty).found


@pytest.mark.parametrize("held_out", [False, True])
def test_evaluation_prompts_are_fixed_and_cover_their_pairs(held_out):
    first, again = data.evaluation_prompts(48, held_out=held_out), data.evaluation_prompts(48, held_out=held_out)
    assert first == again
    pairs = {(s.colour, s.shape) for s in first}
    assert (pairs == set(data.HELD_OUT_PAIRS)) if held_out else not pairs & data.HELD_OUT_PAIRS
    assert {s.position for s in first} == set(data.POSITIONS)
