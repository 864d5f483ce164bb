"""A tiny Stable Diffusion safety checker, for tests: one that flags every image, or none.

The real checker compares a CLIP image embedding with 17 concept embeddings
and flags the image when a cosine similarity exceeds the concept's threshold.
Cosine similarity lies in [-1, 1], so thresholds of -2 flag everything and 2
nothing, whatever the random weights: the tests then know the answer.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
from transformers import CLIPConfig, CLIPImageProcessor


def with_safety_checker(model: Path, folder: Path, flag_everything: bool) -> Path:
    """A copy of `model` in `folder` with a tiny safety checker and its feature extractor added."""
    if not folder.exists():
        shutil.copytree(model, folder)
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config={"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 4},
        vision_config={"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 4,
                       "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )  # fmt: skip
    checker = StableDiffusionSafetyChecker(config)
    threshold = -2.0 if flag_everything else 2.0
    with torch.no_grad():
        checker.concept_embeds_weights.fill_(threshold)
        checker.special_care_embeds_weights.fill_(threshold)
    checker.save_pretrained(folder / "safety_checker")
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        folder / "feature_extractor"
    )
    return folder
