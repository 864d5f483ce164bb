"""A real picture of the model's guess at every step: its own VAE, the tiny autoencoder TAESD, or none.

The linear latent-to-RGB map is a rough preview; a decoder draws the picture
the latent stands for. The model's own VAE is the real thing, and cheap on a
small model (Shapes decodes a 64 px picture in milliseconds), but on SD 1.5 a
decode costs about as much as one and a half UNet steps. TAESD (Bohan, 2023) is
a small distilled decoder for SD latents, a few percent of the VAE's cost, close
but not equal to its pictures. Without either, the step's picture stays the
linear approximation, labelled as such.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from diffusers import AutoencoderKL, AutoencoderTiny

log = logging.getLogger(__name__)

VAE, TAESD, LINEAR = "vae", "taesd", "linear"
# "auto" decodes every step with the model's own VAE below this size (Shapes: 0.5M, tiny: 0.1M, SD 1.5: 84M).
SMALL_VAE_PARAMETERS = 10_000_000


def to_pixels(image: torch.Tensor) -> torch.Tensor:
    """A decoder's [1, 3, H, W] output in [-1, 1] as [H, W, 3] uint8 (the pipeline's rounding), on its device."""
    image = (image / 2 + 0.5).clamp(0, 1)
    return (image[0].permute(1, 2, 0).float() * 255).round().to(torch.uint8)


class PreviewDecoder:
    """Decodes a latent into the picture it stands for, for the per-step previews."""

    def __init__(self, name: str, decoder: AutoencoderKL | AutoencoderTiny | None) -> None:
        self.name = name  # "vae", "taesd" or "linear" (no decoder: the linear approximation)
        self.decoder = decoder

    @property
    def draws_pictures(self) -> bool:
        """Whether it decodes into real pictures (else each step keeps the linear approximation)."""
        return self.decoder is not None

    @classmethod
    def load(
        cls, setting: str, taesd_model: str, vae: AutoencoderKL, device: torch.device, dtype: torch.dtype
    ) -> PreviewDecoder:
        """The decoder a `preview_decoder` setting names, for a model with this VAE."""
        if setting == "auto":
            small = sum(p.numel() for p in vae.parameters()) < SMALL_VAE_PARAMETERS
            setting = VAE if small else "off"
        if setting == VAE:
            return cls(VAE, vae)
        if setting == TAESD:
            source = Path(taesd_model).expanduser()
            taesd = AutoencoderTiny.from_pretrained(source if source.is_dir() else taesd_model, torch_dtype=dtype)
            taesd.to(device).eval().requires_grad_(False)
            log.info("per-step pictures decoded with TAESD from %s", taesd_model)
            return cls(TAESD, taesd)
        return cls(LINEAR, None)

    @torch.inference_mode()
    def decode(self, latent: torch.Tensor) -> torch.Tensor | None:
        """A [1, 4, h, w] latent as an [H, W, 3] uint8 picture on the device; None for the linear map."""
        if self.decoder is None:
            return None
        image = self.decoder.decode(latent / self.decoder.config.scaling_factor, return_dict=False)[0]
        return to_pixels(image)
