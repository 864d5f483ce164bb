"""Limits and words follow the loaded model: Shapes refuses what it cannot paint and says which words it learned."""

from __future__ import annotations

import json

import grpc
import pytest

from services.common.api import pb
from services.inference.classroom.validation import Limits, RequestError, check_generate
from services.inference.diffusion.models import CLASSROOM_FILE, SHAPES_DIR, ModelCard
from services.inference.refusals import RateLimited
from services.inference.settings import InferenceSettings
from services.shapes import data


def test_the_shapes_card_lists_exactly_the_words_its_captions_use():
    card = json.loads((SHAPES_DIR / CLASSROOM_FILE).read_text())
    assert card["vocabulary"] == data.vocabulary()
    assert ModelCard.read(SHAPES_DIR).vocabulary == tuple(data.vocabulary())
    # The words of every caption the program writes, and nothing else.
    words = {word for spec in data.evaluation_prompts(200) for word in spec.caption.split()}
    assert words <= set(data.vocabulary())
    assert {"red", "circle", "left", "an"} <= set(data.vocabulary())
    assert not {"dog", "astronaut", "photo"} & set(data.vocabulary())


@pytest.mark.parametrize(("native", "max_steps", "largest", "steps"), [(64, 100, 128, 100), (512, None, 1024, 150)])
def test_sizes_go_to_twice_the_native_size_and_steps_to_the_cards_cap(native, max_steps, largest, steps):
    limits = Limits.for_model(InferenceSettings(model="tiny"), native, max_steps)
    assert (limits.max_size, limits.max_steps, limits.native_size) == (largest, steps, native)


def test_a_size_past_the_limit_is_refused_with_the_reason():
    settings = InferenceSettings(model="tiny")
    limits = Limits.for_model(settings, 64, 100)
    request = pb.GenerateRequest(prompt="a red circle", width=256, height=128, num_inference_steps=120)
    with pytest.raises(RequestError) as refused:
        check_generate(request, settings, 64, limits=limits)
    violations = dict(refused.value.violations)
    assert set(violations) == {"width", "num_inference_steps"}  # 128 is allowed
    assert violations["width"] == (
        "The width must be a multiple of 8 between 64 and 128 pixels: this model learned to paint 64-pixel "
        "pictures, and much bigger ones come out as broken patterns; you asked for 256."
    )
    assert "between 1 and 100" in violations["num_inference_steps"]


@pytest.mark.parametrize(("wait", "words"), [(0.3, "in 1 second."), (1.0, "in 1 second."), (4.2, "in 5 seconds.")])
def test_the_rate_limit_counts_seconds_in_good_english(wait, words):
    assert str(RateLimited(wait)).endswith(words)


def test_shapes_model_info_offers_its_own_limits(shapes_stub):
    limits = shapes_stub.GetModelInfo(pb.GetModelInfoRequest()).limits
    assert (limits.min_size, limits.max_size, limits.size_multiple, limits.max_steps) == (64, 128, 8, 100)


def test_shapes_refuses_256_pixels_with_a_sentence(shapes_stub):
    with pytest.raises(grpc.RpcError) as refused:
        list(shapes_stub.Generate(pb.GenerateRequest(prompt="a red circle", width=256, height=64)))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "between 64 and 128 pixels: this model learned to paint 64-pixel pictures" in refused.value.details()


def test_shapes_tokens_say_which_words_it_learned(shapes_stub):
    tokens = shapes_stub.Tokenize(pb.TokenizeRequest(prompt="A red dog on the left")).tokens
    learned = {t.text: t.known for t in tokens if t.kind == pb.TOKEN_KIND_PROMPT}
    assert learned == {"a": True, "red": True, "dog": False, "on": True, "the": True, "left": True}
    assert all(t.known for t in tokens if t.kind != pb.TOKEN_KIND_PROMPT)  # start, end, padding frame every caption


def test_tiny_knows_every_piece_and_keeps_the_wide_limits(stub):
    tokens = stub.Tokenize(pb.TokenizeRequest(prompt="a photo of a dog riding a zebrafish")).tokens
    assert all(t.known for t in tokens)
    limits = stub.GetModelInfo(pb.GetModelInfoRequest()).limits
    assert (limits.max_size, limits.max_steps) == (1024, 150)
