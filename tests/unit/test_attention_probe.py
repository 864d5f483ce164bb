"""The cross-attention probe alone: diffusers' own probabilities, the UNet untouched, wrappers seen through."""

from __future__ import annotations

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention, AttnProcessor

from services.inference.diffusion.acceleration import BucketedUNet
from services.inference.diffusion.attention import CrossAttentionProbe, eager


class _Reference(AttnProcessor):
    """diffusers' classic processor, keeping the probabilities it computes (averaged over heads)."""

    def __init__(self, kept: list[torch.Tensor]) -> None:
        super().__init__()
        self.kept = kept

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None):
        query = attn.head_to_batch_dim(attn.to_q(hidden_states))
        key = attn.head_to_batch_dim(attn.to_k(encoder_hidden_states))
        probabilities = attn.get_attention_scores(query, key, None)
        self.kept.append(probabilities.view(hidden_states.shape[0], attn.heads, *probabilities.shape[1:]).mean(1))
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb)


def _unet(tiny_dir) -> UNet2DConditionModel:
    return UNet2DConditionModel.from_pretrained(tiny_dir / "unet").eval().requires_grad_(False)


def _inputs(unet: UNet2DConditionModel) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(4, 4, 8, 12, generator=generator)
    text = torch.randn(4, 77, unet.config.cross_attention_dim, generator=generator)
    return latents, torch.tensor([900.0, 900.0, 300.0, 300.0]), text


@torch.inference_mode()
def test_recorded_maps_are_diffusers_own_probabilities_and_the_output_is_untouched(tiny_dir):
    unet = _unet(tiny_dir)
    latents, timesteps, text = _inputs(unet)
    before = unet(latents, timesteps, encoder_hidden_states=text, return_dict=False)[0]

    probe = CrossAttentionProbe(unet)
    assert probe.layers == 4  # the tiny model attends to the text in its lower block only
    with probe.recording([1, 3], (8, 12), latents.device) as recording:
        during = unet(latents, timesteps, encoder_hidden_states=text, return_dict=False)[0]
        results = recording.results()
    after = unet(latents, timesteps, encoder_hidden_states=text, return_dict=False)[0]
    assert torch.equal(before, during) and torch.equal(before, after)

    kept: list[torch.Tensor] = []
    for module in unet.modules():
        if isinstance(module, Attention) and module.is_cross_attention:
            module.set_processor(_Reference(kept))
    unet(latents, timesteps, encoder_hidden_states=text, return_dict=False)
    reference = torch.stack(kept).mean(0)  # [rows, 4 * 6 positions, 77], every layer at one grid
    for row, maps in zip([1, 3], results, strict=True):
        [grid] = maps.resolutions
        assert (grid.height, grid.width, grid.layers) == (4, 6, 4)
        expected = reference[row].T.reshape(77, 4, 6)
        torch.testing.assert_close(grid.maps, expected, rtol=0, atol=1e-5)
        assert maps.maps.shape == (77, 8, 12)
        torch.testing.assert_close(maps.maps.sum(0), torch.ones(8, 12), rtol=0, atol=1e-4)


def test_eager_sees_through_compiled_and_bucketed_wrappers(tiny_dir):
    unet = _unet(tiny_dir)
    assert eager(unet) is unet
    assert eager(BucketedUNet(unet, compiled=unet, buckets=(1, 2), cuda_graphs=False)) is unet
    assert eager(torch.compile(unet)) is unet
