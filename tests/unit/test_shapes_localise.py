"""The Shapes training's localisation loss: the words it trains, the masks, the kept probabilities, the loss."""

from __future__ import annotations

import random

import numpy as np
import torch
from diffusers import UNet2DConditionModel

from services.inference.diffusion.models import SHAPES_DIR
from services.shapes import data
from services.shapes.localise import keep_cross_attention, localisation_loss, shape_masks, word_positions


def test_the_colour_and_shape_words_are_found_in_every_caption_form():
    positions = word_positions(["a red circle", "a large blue square on the left", "an orange star at the top", ""])
    # One CLIP token per word, after the start token: "a"=1, "red"=2, "circle"=3.
    assert positions.tolist() == [[2, 3], [3, 4], [2, 3], [-1, -1]]
    assert word_positions(["a large blue square on the left"], ("shape",)).tolist() == [[4]]


def test_a_shape_mask_covers_the_cells_the_shape_was_drawn_in():
    spec = data.ShapeSpec("blue", "square", "", "on the left", data.POSITIONS["on the left"])
    pixels = (np.asarray(data.draw(spec), dtype=np.float32) / 127.5 - 1.0).transpose(2, 0, 1)[None]
    mask = shape_masks(pixels, 8)[0]
    assert mask.shape == (8, 8)
    assert mask[:, 4:].sum() == 0  # nothing on the right half
    assert mask[3:5, 1:3].min() > 0.9  # the square's middle, around (0.25, 0.5), fully covered


def test_the_kept_probabilities_change_nothing_the_unet_computes():
    unet = UNet2DConditionModel.from_pretrained(SHAPES_DIR / "unet", torch_dtype=torch.float32)
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(2, 4, 8, 8, generator=generator)
    texts = torch.randn(2, 77, unet.config.cross_attention_dim, generator=generator)
    timesteps = torch.tensor([10, 900])
    with torch.no_grad():
        plain = unet(latents, timesteps, texts).sample
        kept = keep_cross_attention(unet)
        probed = unet(latents, timesteps, texts).sample
    torch.testing.assert_close(probed, plain, atol=1e-5, rtol=1e-5)
    assert len(kept) == sum(name.endswith("attn2.processor") for name in unet.attn_processors)
    for probabilities in kept:  # [batch, cells, tokens], each cell's row a distribution over the tokens
        torch.testing.assert_close(probabilities.sum(-1), torch.ones(probabilities.shape[:2]))


def test_the_loss_is_low_when_the_words_look_at_the_shape_and_high_elsewhere():
    masks = torch.zeros(1, 8, 8)
    masks[0, 2:4, 2:4] = 1.0  # the shape sits in 4 of the 64 cells
    positions = torch.tensor([[2, 3]])

    def probabilities(where: slice) -> torch.Tensor:
        p = torch.full((1, 64, 77), 1.0 / 77)
        grid = p.view(1, 8, 8, 77)
        grid[0, where, where, 2:4] = 0.5  # the two words pulled towards these cells
        return p

    on_shape = localisation_loss([probabilities(slice(2, 4))], masks, positions)
    elsewhere = localisation_loss([probabilities(slice(5, 7))], masks, positions)
    assert on_shape < 0.7 < elsewhere  # mass on the shape: about 0.9 against about 0.02
    assert localisation_loss([probabilities(slice(2, 4))], masks, torch.tensor([[-1, -1]])) == 0


def test_training_pictures_come_with_their_masks():
    pixels, captions = data.batch(random.Random(3), 4)
    masks = shape_masks(pixels, 8)
    positions = word_positions(captions)
    assert masks.shape == (4, 8, 8) and (masks.flatten(1).sum(1) > 0).all()
    assert (positions >= 1).all()
