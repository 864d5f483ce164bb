"""Training the Shapes model's words to look where they paint: a cross-attention localisation loss.

Trained on the noise loss alone, the Shapes model follows its prompts but reads
the shape word through a diffuse map: its mass sits on the shape only about 1.1
times as much as on any other place of the same size, so lesson 7 ("which word
paints where") has nothing to show for it. Every training picture comes with its
exact shape mask (the program drew it), so the training can say where the words
that describe the shape (its colour and its kind) should look.

For each cross-attention layer, the probability each latent cell gives the word
is read (averaged over heads) and normalised over the cells into a map; the
loss is minus the log of that map's mass on the cells the shape touches, at the
layer's resolution. Only captioned samples count (a dropped caption has no
words). Training uses its own attention processor that keeps the
probabilities; the saved model uses diffusers' processors as before.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention

from services.shapes import data

# The kinds of word whose maps can be trained to sit on the shape.
WORD_KINDS = {"colour": set(data.PALETTE), "shape": set(data.SHAPES)}


def shape_masks(pixels: np.ndarray, latent_size: int) -> torch.Tensor:
    """The share of each latent cell the shape covers: [n, latent_size, latent_size] from [n, 3, H, W] in [-1, 1]."""
    background = torch.tensor(data.BACKGROUND, dtype=torch.float32)[None, :, None, None] / 127.5 - 1.0
    drawn = (torch.from_numpy(pixels) - background).abs().amax(dim=1, keepdim=True) > 0.04
    return F.adaptive_avg_pool2d(drawn.float(), latent_size)[:, 0]


def word_positions(captions: list[str], kinds: tuple[str, ...] = ("colour", "shape")) -> torch.Tensor:
    """For each caption, the token positions of its words of these kinds ([n, kinds]; -1 where absent).

    Every word of the data set's captions is one CLIP token, after the start token.
    """
    describing = [WORD_KINDS[kind] for kind in kinds]
    positions = torch.full((len(captions), len(describing)), -1, dtype=torch.long)
    for row, caption in enumerate(captions):
        for index, word in enumerate(caption.split()):
            for column, words in enumerate(describing):
                if word in words:
                    positions[row, column] = 1 + index
    return positions


class KeptProbabilities:
    """An attention processor for cross-attention that keeps its probabilities (training only)."""

    def __init__(self, kept: list[torch.Tensor]) -> None:
        self.kept = kept

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        **_: object,
    ) -> torch.Tensor:
        if encoder_hidden_states is None or hidden_states.ndim != 3 or attn.norm_cross or attn.residual_connection:
            raise ValueError("KeptProbabilities serves the UNet's plain cross-attention layers only")
        batch, cells, _ = hidden_states.shape
        query = attn.head_to_batch_dim(attn.to_q(hidden_states))
        key = attn.head_to_batch_dim(attn.to_k(encoder_hidden_states))
        value = attn.head_to_batch_dim(attn.to_v(encoder_hidden_states))
        probabilities = attn.get_attention_scores(query, key, attention_mask)  # [batch * heads, cells, tokens]
        self.kept.append(probabilities.view(batch, attn.heads, cells, -1).mean(dim=1))
        out = attn.batch_to_head_dim(torch.bmm(probabilities, value))
        return attn.to_out[1](attn.to_out[0](out)) / attn.rescale_output_factor


def keep_cross_attention(unet: UNet2DConditionModel) -> list[torch.Tensor]:
    """Give every cross-attention layer the keeping processor; the list fills at each UNet call."""
    kept: list[torch.Tensor] = []
    processors = {
        name: KeptProbabilities(kept) if name.endswith("attn2.processor") else processor
        for name, processor in unet.attn_processors.items()
    }
    unet.set_attn_processor(processors)
    return kept


def localisation_loss(kept: list[torch.Tensor], masks: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Minus the log of each describing word's map mass on the shape, averaged over words and layers.

    `kept`: one UNet call's probabilities, [batch, cells, tokens] per layer; `masks`:
    [batch, h, w] cell coverage at the latent's size; `positions`: [batch, words], -1 to skip.
    """
    losses = []
    valid = positions >= 0
    if not valid.any():
        return torch.zeros(())
    for probabilities in kept:
        side = math.isqrt(probabilities.shape[1])
        inside = (F.adaptive_avg_pool2d(masks[:, None], side)[:, 0] > 0).flatten(1).float()  # [batch, cells]
        columns = probabilities.gather(2, positions.clamp(min=0)[:, None, :].expand(-1, probabilities.shape[1], -1))
        maps = columns / columns.sum(dim=1, keepdim=True).clamp_min(1e-8)  # [batch, cells, words]
        mass = (maps * inside[:, :, None]).sum(dim=1)  # [batch, words]
        losses.append(-torch.log(mass.clamp_min(1e-6))[valid].mean())
    return torch.stack(losses).mean()
