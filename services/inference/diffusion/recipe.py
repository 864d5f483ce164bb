"""What Shapes' own training (services/shapes/train.py) and a class's teaching (teach.py) share: the loss and the rate.

Both learn as Shapes first learned: the noise error weighted by 1/alpha-bar_t, and a
learning rate that warms up for a short share of the steps, then falls to nothing
(PyTorch's one-cycle schedule).
"""

from __future__ import annotations

import torch


def weighted_noise_loss(prediction: torch.Tensor, noise: torch.Tensor, alphas_cumprod_t: torch.Tensor) -> torch.Tensor:
    """Shapes' training loss: the noise error weighted by 1/alpha-bar_t (as predicting v), normalised."""
    weight = 1.0 / alphas_cumprod_t
    return (weight[:, None, None, None] * (prediction - noise) ** 2).mean() / weight.mean()


def one_cycle(
    optimiser: torch.optim.Optimizer, rates: float | list[float], steps: int, warmup: float
) -> torch.optim.lr_scheduler.OneCycleLR:
    """The rate's schedule over `steps` (at least 2): up for the `warmup` share of them, then down to nothing.

    OneCycleLR's warm-up ends at step warmup x steps - 1, and its first step divides by that
    length: 0 when the warm-up is exactly one step (20 steps at 5 %), and teaching that many
    steps failed. That warm-up is made a hair shorter: the rate starts at its peak, as with
    every warm-up under one step. Other counts keep their schedule.
    """
    total = max(2, steps)
    share = warmup * (1 - 1e-6) if abs(warmup * total - 1) < 1e-9 else warmup
    return torch.optim.lr_scheduler.OneCycleLR(optimiser, rates, total_steps=total, pct_start=share)
