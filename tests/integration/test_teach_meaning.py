"""Lesson 10, what a student sees: a class's hearts taught to Shapes give hearts, in the asked colour and place.

Twelve children's hearts (tests/support/drawings.py), taught with the service's own recipe and
steps (`teach.py`, one torch thread, as the service trains), loaded into a copy as the service
builds a class's model (`taught.with_word`), painted through the service's own loop. The
benchmark (tests/bench/test_bench_teach.py) measures the same on 32 prompts and the old shapes
on 48; here 8 prompts, one per colour, every place.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from services.common import shapes_data
from services.common.include_mask import Probe
from services.common.shapes_judge import judge
from services.common.shapes_world import PALETTE, POSITIONS
from services.inference.diffusion.denoise import Generation, denoise
from services.inference.diffusion.spec import GenerationSpec
from services.inference.diffusion.taught import with_word
from services.inference.diffusion.teach import DEFAULT_STEPS, teach
from services.inference.diffusion.teach_data import (
    known_silhouettes,
    mean_silhouette,
    picture_silhouette,
    silhouette_iou,
)
from services.shapes.evaluate import DEFAULT_SCHEDULER, load
from services.shapes.evaluate import DEFAULT_STEPS as PICTURE_STEPS
from tests.support.drawings import class_drawings

WORD = "heart"
PROMPTS = [(colour, list(POSITIONS)[i % len(POSITIONS)]) for i, colour in enumerate(PALETTE)]  # 8: every colour


@pytest.fixture(scope="module")
def taught_class():
    """(the class's drawings, Shapes, the class's model), taught with one torch thread (put back after)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        shapes = load()
        drawings = class_drawings(12)
        losses: list[float] = []
        word = teach(shapes, drawings, WORD, steps=DEFAULT_STEPS, seed=0,
                     on_progress=lambda p: losses.append(p.loss), should_stop=lambda: False)  # fmt: skip
        yield drawings, shapes, with_word(shapes, word), losses
    finally:
        torch.set_num_threads(threads)


def paint(model, prompts: list[str], attention: bool = False) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Each prompt's picture (seed 100 + i) and, when asked, its word maps averaged over the last 5 steps."""
    size = model.default_size
    include = frozenset({Probe.CROSS_ATTENTION}) if attention else frozenset()
    generations = [
        Generation(model, GenerationSpec(p, "", 100 + i, PICTURE_STEPS, 7.5, size, size, DEFAULT_SCHEDULER, include))
        for i, p in enumerate(prompts)
    ]
    for generation in generations:
        generation.start()
    maps: list[list[np.ndarray]] = [[] for _ in prompts]
    for events in denoise(model, generations):
        for kept, event in zip(maps, events, strict=True):
            if event.cross_attention is not None:
                kept.append(event.cross_attention.maps.numpy().astype(np.float32))
    pictures = [g.finish(0.0, 0.0).image for g in generations]
    return [(p, np.mean(m[-5:], axis=0) if m else None) for p, m in zip(pictures, maps, strict=True)]


def test_the_class_s_word_paints_a_heart_in_the_colour_and_place_asked(taught_class):
    drawings, _, model, losses = taught_class
    assert np.mean(losses[-20:]) < np.mean(losses[:20])  # it learned: the loss the class watched fell
    prompts = [shapes_data.caption_of(colour, WORD, place) for colour, place in PROMPTS]
    mean, known = mean_silhouette(drawings), known_silhouettes()
    placed = looks = 0
    for (colour, place), (picture, _) in zip(PROMPTS, paint(model, prompts), strict=True):
        verdict = judge(picture)
        placed += verdict.colour == colour and verdict.position == place
        shape = picture_silhouette(picture)
        looks += shape is not None and silhouette_iou(shape, mean) > max(
            silhouette_iou(shape, k) for k in known.values()
        )
    assert placed >= 7, f"{placed} of 8 in the colour and place asked"
    assert looks >= 6, f"{looks} of 8 look more like the class's drawings than like any shape Shapes knew"


def test_plain_shapes_never_painted_a_heart(taught_class):
    """The same prompts before teaching: "heart" meant nothing, so no picture looks like the drawings."""
    drawings, shapes, _, _ = taught_class
    prompts = [shapes_data.caption_of(colour, WORD, place) for colour, place in PROMPTS]
    mean, known = mean_silhouette(drawings), known_silhouettes()
    looks = 0
    for picture, _ in paint(shapes, prompts):
        shape = picture_silhouette(picture)
        looks += shape is not None and silhouette_iou(shape, mean) > max(
            silhouette_iou(shape, k) for k in known.values()
        )
    assert looks <= 2, f"{looks} of 8 looked like hearts before the word was taught"


def test_in_the_class_s_model_the_words_still_look_where_they_paint(taught_class):
    """The colour word and the new word both attend to the shape at the last steps (as lesson 7 shows)."""
    _, _, model, _ = taught_class
    prompts = [shapes_data.caption_of(colour, WORD, place) for colour, place in PROMPTS]
    on_shape = {"colour": 0, WORD: 0}
    for (colour, _), prompt, (picture, maps) in zip(PROMPTS, prompts, paint(model, prompts, attention=True),
                                                    strict=True):  # fmt: skip
        verdict = judge(picture)
        assert maps is not None
        pieces = model.tokenize(prompt).texts[: maps.shape[0]]
        for kind, word in (("colour", colour), (WORD, WORD)):
            attention = np.kron(maps[[p.strip() for p in pieces].index(word)], np.ones((8, 8)))
            left, top, right, bottom = verdict.box
            inside = attention[top:bottom, left:right].sum() / attention.sum()
            share = max(1, (bottom - top) * (right - left)) / attention.size
            on_shape[kind] += verdict.found and inside / share >= 2.0
    assert on_shape["colour"] >= 6 and on_shape[WORD] >= 6, on_shape


def test_the_old_shapes_keep_their_words_in_the_class_s_model(taught_class):
    _, _, model, _ = taught_class
    specs = shapes_data.evaluation_prompts(8, seed=3)
    right = 0
    for spec, (picture, _) in zip(specs, paint(model, [s.caption for s in specs]), strict=True):
        verdict = judge(picture)
        right += (verdict.colour, verdict.shape) == (spec.colour, spec.shape)
    assert right >= 7, f"{right} of 8 old prompts painted right"


# Two prompts per shape Shapes knew, every colour once, none a held-out pair (services/common/shapes_world.py).
OLD_WORDS = [("red", "circle"), ("green", "circle"), ("orange", "square"), ("blue", "square"),
             ("yellow", "triangle"), ("pink", "triangle"), ("purple", "star"), ("black", "star")]  # fmt: skip


def on_shape(model, pairs: list[tuple[str, str]]) -> tuple[dict[str, int], list[float]]:
    """Per shape word, how many of its pictures hold its attention on the shape (as the neighbours measure it).

    On the shape: the share of the word's map (last 5 steps) inside the judged shape's box is at
    least twice the box's share of the picture. Also each picture's ratio of the two (0 if no shape).
    """
    prompts = [shapes_data.caption_of(colour, shape, list(POSITIONS)[i % len(POSITIONS)])
               for i, (colour, shape) in enumerate(pairs)]  # fmt: skip
    counts = {shape: 0 for _, shape in pairs}
    ratios: list[float] = []
    for (_, shape), prompt, (picture, maps) in zip(pairs, prompts, paint(model, prompts, attention=True), strict=True):
        verdict = judge(picture)
        assert maps is not None
        pieces = [p.strip() for p in model.tokenize(prompt).texts[: maps.shape[0]]]
        attention = np.kron(maps[pieces.index(shape)], np.ones((8, 8)))
        left, top, right, bottom = verdict.box
        inside = attention[top:bottom, left:right].sum() / attention.sum()
        share = max(1, (bottom - top) * (right - left)) / attention.size
        ratio = inside / share if verdict.found else 0.0
        ratios.append(round(float(ratio), 2))
        counts[shape] += int(ratio >= 2.0)
    return counts, ratios


def test_in_the_class_s_model_the_old_shape_words_still_look_at_their_shape(taught_class):
    """Circle, square, triangle and star: each word's attention still sits on the shape it paints, after teaching."""
    _, shapes, model, _ = taught_class
    before, before_ratios = on_shape(shapes, OLD_WORDS)
    after, after_ratios = on_shape(model, OLD_WORDS)
    print(f"old words on their shape: plain Shapes {before} {before_ratios}, the class's {after} {after_ratios}")
    assert all(after[shape] >= 2 for shape in after), (after, after_ratios)
    assert sum(after.values()) >= sum(before.values()) - 1, (before, after)
