"""The tiny model: CLIP's real vocabulary, SD's shapes, deterministic builds."""

from pathlib import Path

import pytest
from transformers import CLIPTokenizer

from services.inference.diffusion.models import DiffusionModel, folder_revision
from services.inference.diffusion.tiny import build_tiny_model

# Published CLIP ids (start 49406, end 49407).
KNOWN_PROMPTS = {
    "a photo of an astronaut riding a horse": [49406, 320, 1125, 539, 550, 18376, 6765, 320, 4558, 49407],
}


@pytest.fixture(scope="module")
def model(tiny_dir: Path) -> DiffusionModel:
    return DiffusionModel("tiny", folder_revision(tiny_dir), tiny_dir, device="cpu")


def test_vocabulary_is_clips(tiny_dir):
    tokenizer = CLIPTokenizer.from_pretrained(tiny_dir / "tokenizer")
    assert len(tokenizer) == 49408
    assert tokenizer.model_max_length == 77
    for prompt, ids in KNOWN_PROMPTS.items():
        assert tokenizer(prompt).input_ids == ids


def test_shapes_follow_stable_diffusion(model):
    assert model.vae_downsample_factor == 8
    assert model.latent_channels == 4
    assert model.default_size == 512
    assert model.vae.config.scaling_factor == pytest.approx(0.18215)
    assert model.scheduler_config["steps_offset"] == 1


def test_build_is_deterministic(tmp_path, tiny_dir):
    again = build_tiny_model(tmp_path / "again")
    assert folder_revision(again) == folder_revision(tiny_dir)


def test_tokens_show_pieces_padding_and_what_was_cut(model):
    tokens = model.tokenize("supercalifragilistic unicorns")
    assert len(tokens.ids) == 77
    assert tokens.ids[0] == 49406 and tokens.ids[tokens.end_position] == 49407
    assert tokens.prompt_token_count == tokens.end_position - 1 > 2  # one word, several pieces
    assert tokens.pieces[tokens.end_position - 1].endswith("</w>")
    assert all(i == 49407 for i in tokens.ids[tokens.end_position :])
    assert not tokens.truncated

    long = model.tokenize(" ".join(["horse"] * 80) + " in a meadow")
    assert long.truncated and long.prompt_token_count == 83
    assert len(long.ids) == 77 and long.ids[-1] == 49407 and long.end_position == 76
    assert long.truncated_texts == ["horse"] * 5 + ["in", "a", "meadow"]
    assert long.truncated_text == "horse horse horse horse horse in a meadow"


def test_each_tokens_text_is_the_tokenizers_own_decoding_whatever_was_decoded_before(model):
    prompts = ["a café 🎨 of zebras", "zebras zebras " * 40 + "at dusk", "", "naïve émoji ✨✨ ok"]
    for _ in range(2):  # the second time each token's text was kept from the first
        for prompt in prompts:
            tokens = model.tokenize(prompt)
            assert tokens.texts == model.tokenizer.batch_decode([[i] for i in tokens.ids])
            assert tokens.truncated_texts == model.tokenizer.batch_decode([[i] for i in tokens.truncated_ids])
