"""A quick accuracy check while the Shapes model trains: does it paint what the caption says yet.

Loss alone says little here (it falls long before the caption is obeyed), so
training prints, every few hundred steps, how often the judge agrees with the
prompt at guidance 7.5 on a small fixed set. The real measurement is
`evaluate.py`, through the service's own runner.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from PIL import Image
from transformers import CLIPTextModel, CLIPTokenizer

from services.common.shapes_judge import judge
from services.inference.diffusion.tiny import SD1_SCHEDULER_CONFIG, SD1_SCHEDULER_EXTRA
from services.shapes import data


class QuickEval:
    """Judges a few pictures at guidance 7.5; keeps a contact sheet of them and the weights, in `folder`."""

    def __init__(
        self, vae: AutoencoderKL, tokenizer: CLIPTokenizer, folder: Path, prompts: int = 24, steps: int = 20
    ) -> None:
        self.vae = vae
        self.tokenizer = tokenizer
        self.folder = folder
        self.specs = data.evaluation_prompts(prompts, seed=1)
        self.steps = steps

    @torch.no_grad()
    def __call__(self, unet: UNet2DConditionModel, text_encoder: CLIPTextModel, step: int) -> dict[str, float]:
        pipeline = StableDiffusionPipeline(
            vae=self.vae,
            text_encoder=text_encoder,
            tokenizer=self.tokenizer,
            unet=unet,
            scheduler=DDIMScheduler.from_config(SD1_SCHEDULER_CONFIG | SD1_SCHEDULER_EXTRA),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        pipeline.set_progress_bar_config(disable=True)
        pictures = pipeline(
            [s.caption for s in self.specs],
            num_inference_steps=self.steps,
            guidance_scale=7.5,
            height=64,
            width=64,
            generator=torch.Generator().manual_seed(0),
            output_type="np",
        ).images
        images = (pictures * 255).round().astype(np.uint8)
        verdicts = [judge(p) for p in images]
        self.folder.mkdir(parents=True, exist_ok=True)
        sheet = images.reshape(4, -1, *images.shape[1:]).transpose(0, 2, 1, 3, 4).reshape(4 * 64, -1, 3)
        Image.fromarray(sheet).save(self.folder / f"step-{step:05d}.png")
        # The latest weights, so a run cut short still leaves a model to look at.
        unet.save_pretrained(self.folder / "unet")
        text_encoder.save_pretrained(self.folder / "text_encoder")
        n = len(self.specs)
        return {
            "found": sum(v.found for v in verdicts) / n,
            "colour": sum(v.colour == s.colour for v, s in zip(verdicts, self.specs, strict=True)) / n,
            "shape": sum(v.shape == s.shape for v, s in zip(verdicts, self.specs, strict=True)) / n,
            "position": sum(v.position == s.position for v, s in zip(verdicts, self.specs, strict=True)) / n,
        }
