"""The measures behind lessons 7 and 8's sentences (frontend/material/measures.py), on hand-made inputs."""

from __future__ import annotations

import numpy as np

from frontend.material import measures
from services.common.shapes_judge import Verdict


def verdict(colour: str, shape: str, position: str) -> Verdict:
    return Verdict(found=True, colour=colour, shape=shape, position=position)


def test_each_property_is_settled_from_the_first_switch_after_which_it_stays_the_originals():
    judged = {
        0: verdict("blue", "square", "on the right"),
        10: verdict("blue", "square", "on the right"),
        20: verdict("blue", "square", "on the left"),
        30: verdict("red", "square", "on the right"),  # the position goes back: not settled before 40
        40: verdict("red", "square", "on the left"),
        50: verdict("red", "circle", "on the left"),
    }
    colour, shape, position = measures.settling(judged, 50)
    assert (colour.settled_from, shape.settled_from, position.settled_from) == (30, None, 40)
    sentences = measures.settling_sentences([colour, shape, position], 50)
    assert sentences[0] == (
        "The colour is the original's (red) when the switch comes at step 30 of 50 or later; switched at step "
        "10 or 20, it is the new prompt's (blue)."
    )
    assert sentences[1] == (
        "The shape still follows the new prompt (square) when the switch comes at step 40 of 50, the latest "
        "switch here."
    )
    assert sentences[2].startswith("The position is the original's (on the left) when the switch comes at step 40")
    assert "in turn on the right and on the left" in sentences[2]


def test_a_property_both_prompts_share_is_said_to_be_the_same():
    judged = {0: verdict("red", "square", "on the left"), 5: verdict("red", "square", "on the left"),
              50: verdict("red", "circle", "on the left")}  # fmt: skip
    colour, _, _ = measures.settling(judged, 50)
    assert measures.settling_sentences([colour], 50) == [
        "The colour is the same in both prompts' pictures (red): nothing to decide."
    ]


def test_the_nearer_picture_by_pixels():
    sentence = measures.nearer_sentence({0: (9, 0), 5: (8, 1), 30: (2, 5), 40: (1, 1), 50: (0, 9)}, 50)
    assert sentence == (
        "In pixels: switched at step 5, the picture is nearer the new prompt's own (switched at 0); switched at "
        "step 30 or 40, it is nearer the original (never switched)."
    )


def test_shares_leave_the_rest_to_the_padding():
    maps = np.zeros((2, 4, 2, 2))  # two steps; start, two words, end
    maps[:, 0], maps[:, 1], maps[:, 2], maps[:, 3] = 0.01, 0.05, 0.04, 0.02
    shares = measures.shares(maps, padding_count=73)
    assert np.isclose(shares.padding, 0.88) and np.isclose(shares.words, 0.09)
    assert shares.largest() == "the padding"
    assert measures.shares_sentence(shares) == (
        "On this run, the start token gets 1% of the attention, the prompt's 2 pieces 9% together, the end token "
        "2%, and the 73 padding positions after it 88%. The most goes to the padding."
    )


def test_where_a_map_puts_its_mass():
    even = np.ones((8, 8))
    assert measures.half_mass_area(even) == 0.5
    focused = np.zeros((8, 8))
    focused[0, :2] = 1  # all of it on 2 of 64 cells
    assert measures.half_mass_area(focused) == 1 / 64
    mask = np.zeros((64, 64), dtype=bool)
    mask[:8, :16] = True  # the two cells' pixels: 1/32 of the picture
    on, share = measures.on_mask(focused, mask)
    assert on == 1.0 and share == 1 / 32
    assert measures.alike(focused, focused) == 1.0 and abs(measures.alike(focused, even)) == 0.0


def test_the_ramp_is_fixed_to_the_even_share():
    heat = np.array([[0.0, 1.0], [1.0, 2.0]])  # mean 1: 0, 1 and 2 times the even share
    assert np.allclose(measures.times_even(heat), heat)
    assert np.allclose(measures.viridis(np.array(0.0)), [68, 1, 84]) and np.allclose(
        measures.viridis(np.array(1.0)), [253, 231, 37]
    )
