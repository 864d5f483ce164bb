"""The starting noise depends on the seed alone, not on the precision the model runs in."""

from __future__ import annotations

import torch

from services.inference.diffusion.denoise import starting_noise

SHAPE = (1, 4, 9, 7)  # a 72x56 picture's latents


def seeded(seed: int = 42) -> torch.Generator:
    return torch.Generator("cpu").manual_seed(seed)


def test_the_seed_gives_the_same_noise_in_every_precision():
    full = starting_noise(SHAPE, seeded(), torch.device("cpu"), torch.float32)
    half = starting_noise(SHAPE, seeded(), torch.device("cpu"), torch.float16)
    assert full.dtype == torch.float32 and half.dtype == torch.float16
    torch.testing.assert_close(full, torch.randn(SHAPE, generator=seeded()))  # diffusers' float32 draw
    torch.testing.assert_close(half, full.half())  # the same numbers, rounded to float16
    # Drawn in float16 directly, the CPU gives other numbers altogether for such shapes (what a GPU model
    # in float16 once started from).
    direct = torch.randn(SHAPE, generator=seeded(), dtype=torch.float16)
    assert (direct.float() - full).abs().max() > 1.0


def test_another_seed_gives_other_noise():
    one = starting_noise(SHAPE, seeded(1), torch.device("cpu"), torch.float32)
    two = starting_noise(SHAPE, seeded(2), torch.device("cpu"), torch.float32)
    assert (one - two).abs().max() > 1.0
