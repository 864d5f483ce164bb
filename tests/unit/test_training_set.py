"""Lesson 9's training set: the very pictures Shapes learned from, drawn again in the order training drew them."""

from __future__ import annotations

import json
import random

import numpy as np

from services.common import shapes_data as data
from services.inference.diffusion.models import SHAPES_DIR
from services.inference.learned.training_set import PAGE_DEFAULT, PAGE_MAX, TrainingSet, picture_of, training_specs


def test_the_sequence_is_the_one_train_py_encoded():
    # services/shapes/train.py's encode_pictures: data.batch in chunks of 500 from random.Random(seed + 1).
    rng = random.Random(0 + 1)
    pixels, captions = [], []
    for _ in range(2):
        chunk, words = data.batch(rng, 500, data.IMAGE_SIZE)
        pixels.append(chunk)
        captions += words
    specs = training_specs(0, 1000)
    assert [s.caption for s in specs] == captions
    drawn = np.stack([picture_of(s) for s in specs[::97]]).astype(np.float32) / 127.5 - 1.0
    assert np.array_equal(drawn.transpose(0, 3, 1, 2), np.concatenate(pixels)[::97])


def test_the_record_names_both_runs_and_the_set_they_drew_from():
    training = TrainingSet(json.loads((SHAPES_DIR / "training.json").read_text()))
    assert training.size == 40000 and len(training.specs) == 40000
    assert [(r.pictures, r.steps, r.batch_size) for r in training.runs] == [(40000, 3000, 64), (20000, 500, 64)]
    # A caption that names its place draws the same picture every time: those pictures come in many copies.
    assert sum(training.copies.values()) == 40000
    positioned = [s for s in training.specs[:200] if s.position]
    assert positioned and all(training.copies[s] > 20 for s in positioned)
    assert all(training.copies[s] == 1 for s in training.specs[:200] if not s.position)
    assert not {(s.colour, s.shape) for s in training.specs} & data.HELD_OUT_PAIRS


def test_pages_are_bounded_and_stop_at_the_end():
    training = TrainingSet(json.loads((SHAPES_DIR / "training.json").read_text()))
    assert [p.index for p in training.page(0, 0).pictures] == list(range(PAGE_DEFAULT))
    assert len(training.page(100, 10_000).pictures) == PAGE_MAX
    last = training.page(39_990, 48)
    assert [p.index for p in last.pictures] == list(range(39_990, 40_000)) and last.offset == 39_990
    assert training.page(10**9, 5).pictures == [] and training.page(-3, 1).pictures[0].index == 0
