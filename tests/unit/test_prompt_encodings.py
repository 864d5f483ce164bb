"""The model keeps recent prompts' text encodings: the same prompt runs the text encoder once, to the same bits."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch

from services.inference.diffusion.models import DiffusionModel, folder_revision


@pytest.fixture
def model(tiny_dir: Path) -> DiffusionModel:
    return DiffusionModel("tiny", folder_revision(tiny_dir), tiny_dir, device="cpu")


@pytest.fixture
def encoder_runs(model: DiffusionModel) -> list[int]:
    """How many times the text encoder ran (its forward pass), as a list to read from the test."""
    runs = [0]
    model.text_encoder.register_forward_hook(lambda *_: runs.__setitem__(0, runs[0] + 1))
    return runs


def test_a_class_asking_again_runs_the_text_encoder_once_a_prompt(model, encoder_runs):
    for _ in range(32):  # a class of 32 with the usual empty negative prompt and one lesson prompt
        model.encode("")
        model.encode("a red circle on the left")
    assert encoder_runs[0] == 2


def test_the_kept_encoding_is_the_one_computed_again_to_the_bit(model):
    for prompt in ("", "a red circle on the left", "a blue square on the right"):
        kept = model.encode(prompt)
        assert torch.equal(model.encode(prompt).embeddings, kept.embeddings)
        assert torch.equal(model._encode(prompt).embeddings, kept.embeddings)  # what the encoder gives anew
        assert kept.tokens == model.tokenize(prompt)
    assert not torch.equal(model.encode("a red circle").embeddings, model.encode("a blue circle").embeddings)


def test_only_the_newest_prompts_are_kept(model, encoder_runs, monkeypatch):
    monkeypatch.setattr(model, "_kept_encodings", functools.lru_cache(maxsize=2)(model._encode))  # room for two
    model.encode("one")
    model.encode("two")
    model.encode("one")  # used again: the newest
    model.encode("three")  # one too many: "two", the oldest, goes
    assert encoder_runs[0] == 3
    model.encode("one")
    model.encode("three")
    assert encoder_runs[0] == 3
    model.encode("two")
    assert encoder_runs[0] == 4
