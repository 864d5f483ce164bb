"""Cross-attention maps: where in the latent each text position is read, computed beside the attention.

In every cross-attention layer of the UNet, each latent position (a query)
scores the 77 text vectors (keys) and mixes their values by the softmax of
those scores. The map of one token is its probability at every position.

The probe never touches the attention's output. Each cross-attention layer
keeps the processor it has; a thin wrapper calls it exactly as the layer
would, and only while a recording is open does it also compute, for the
recorded rows of the batch (the conditional branch of the generations that
asked), softmax(Q K^T / sqrt(d)) from the layer's own projections. So the
UNet's result is the same bit for bit with the probe on or off.

Aggregation as in DAAM (Tang et al., 2023): average over heads, resize each
layer's map to the latent grid, average over layers. The maps are also kept per
resolution (averaged over that resolution's layers, at its own size).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention

from services.inference.diffusion.to_device import on_device


@dataclass(frozen=True)
class ResolutionMaps:
    height: int
    width: int
    layers: int
    maps: torch.Tensor  # float32 [text positions, height, width], on the model's device


@dataclass(frozen=True)
class AttentionMaps:
    """One sample's maps for one UNet call, for every text position (the caller keeps what it shows)."""

    maps: torch.Tensor  # float32 [text positions, h, w] on the latent grid, averaged over layers
    resolutions: list[ResolutionMaps]  # finest first


@dataclass
class _Recording:
    rows: torch.Tensor  # which rows of the UNet's batch to record
    latent_size: tuple[int, int]
    sums: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict)  # per grid: [rows, 77, h, w]
    layers: dict[tuple[int, int], int] = field(default_factory=dict)

    def grid(self, positions: int) -> tuple[int, int]:
        """The (h, w) of a layer with this many query positions: the latent, halved (rounding up) until it fits."""
        h, w = self.latent_size
        while h * w > positions:
            h, w = math.ceil(h / 2), math.ceil(w / 2)
        if h * w != positions:
            raise ValueError(f"a cross-attention layer of {positions} positions fits no grid of {self.latent_size}")
        return h, w

    def add(self, attn: Attention, hidden_states: torch.Tensor, text: torch.Tensor) -> None:
        """One layer's probabilities for the recorded rows, averaged over heads, added to its grid's sum."""
        queries = hidden_states[self.rows]
        if queries.ndim == 4:  # [rows, channels, h, w] -> [rows, h * w, channels], as the processor does
            queries = queries.flatten(2).transpose(1, 2)
        if attn.group_norm is not None:
            queries = attn.group_norm(queries.transpose(1, 2)).transpose(1, 2)
        text = text[self.rows]
        if attn.norm_cross:
            text = attn.norm_encoder_hidden_states(text)
        rows, positions, _ = queries.shape
        query = attn.to_q(queries).view(rows, positions, attn.heads, -1).transpose(1, 2)
        key = attn.to_k(text).view(rows, text.shape[1], attn.heads, -1).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        # The same scale scaled_dot_product_attention applies: 1 / sqrt(head size). In float32,
        # so that the probabilities of a float16 model still sum to one.
        scores = query.float() @ key.float().transpose(-1, -2) / math.sqrt(query.shape[-1])
        probabilities = scores.softmax(dim=-1).mean(dim=1)  # [rows, positions, 77]
        h, w = self.grid(positions)
        maps = probabilities.transpose(1, 2).reshape(rows, -1, h, w)
        if (h, w) in self.sums:
            self.sums[(h, w)] += maps
        else:
            self.sums[(h, w)] = maps
        self.layers[(h, w)] = self.layers.get((h, w), 0) + 1

    def results(self) -> list[AttentionMaps]:
        """Each recorded row's maps: per resolution, and resized to the latent grid and averaged over all layers."""
        if not self.sums:
            raise RuntimeError("the UNet ran no cross-attention layer while the probe was recording")
        total: torch.Tensor | None = None
        for grid, summed in self.sums.items():
            # Resizing is linear: resizing the sum of a grid's layers is the sum of each resized.
            if grid != self.latent_size:
                summed = F.interpolate(summed, size=self.latent_size, mode="bilinear", align_corners=False)
            total = summed if total is None else total + summed
        total = total / sum(self.layers.values())
        grids = sorted(self.sums, key=lambda grid: -grid[0] * grid[1])
        return [
            AttentionMaps(
                maps=total[row],
                resolutions=[
                    ResolutionMaps(h, w, self.layers[(h, w)], self.sums[(h, w)][row] / self.layers[(h, w)])
                    for h, w in grids
                ],
            )
            for row in range(total.shape[0])
        ]


class _BesideTheAttention:
    """A cross-attention layer's own processor, called exactly as the layer calls it, plus the probe's look."""

    def __init__(self, processor: object, probe: CrossAttentionProbe) -> None:
        self.processor = processor
        self.probe = probe

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        output = self.processor(
            attn, hidden_states, encoder_hidden_states=encoder_hidden_states, attention_mask=attention_mask
        )
        recording = self.probe.active
        if recording is not None and encoder_hidden_states is not None:
            recording.add(attn, hidden_states, encoder_hidden_states)
        return output


class CrossAttentionProbe:
    """Installed once on a UNet; records cross-attention maps of chosen batch rows while `recording` is open."""

    def __init__(self, unet: torch.nn.Module) -> None:
        self.active: _Recording | None = None
        self.layers = 0
        for module in unet.modules():
            if isinstance(module, Attention) and module.is_cross_attention:
                processor = module.processor  # a copied UNet's layers carry the original's probe: replaced
                inner = processor.processor if isinstance(processor, _BesideTheAttention) else processor
                module.set_processor(_BesideTheAttention(inner, self))
                self.layers += 1

    @contextmanager
    def recording(self, rows: list[int], latent_size: tuple[int, int], device: torch.device) -> Iterator[_Recording]:
        """Record the maps of these rows of the next UNet call(s); read them with `.results()` inside."""
        self.active = _Recording(on_device(rows, torch.long, device), latent_size)
        try:
            yield self.active
        finally:
            self.active = None


def eager(unet: torch.nn.Module) -> torch.nn.Module:
    """The UNet itself, run by Python, from behind a compiled (or batch-padding) wrapper.

    The probe records from Python as each layer runs; a compiled graph, replayed
    or captured as a CUDA graph, would not. So a step that records runs eager:
    diffusers' own computation, as the pipeline runs it.
    """
    inner = unet._modules.get("unet")  # a wrapper holding the UNet as its module "unet"
    if inner is not None:
        return eager(inner)
    return getattr(unet, "_orig_mod", unet)  # torch.compile's OptimizedModule
