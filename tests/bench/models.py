"""Models for benchmarks: an SD 1.5-shaped model with random weights (same cost as the real one)."""

from __future__ import annotations

from pathlib import Path

import torch

from services.inference.diffusion.tiny import save_sd_model


def build_sd15_shaped(folder: Path) -> Path:
    """SD 1.5's architecture (UNet 860M, CLIP ViT-L text encoder, VAE) with random weights."""
    if (folder / "model_index.json").exists():
        return folder
    torch.manual_seed(0)
    return save_sd_model(
        folder,
        text={
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "hidden_act": "quick_gelu",
        },
        unet={
            "sample_size": 64,
            "block_out_channels": (320, 640, 1280, 1280),
            "layers_per_block": 2,
            "cross_attention_dim": 768,
            "attention_head_dim": 8,
        },
        vae={
            "block_out_channels": (128, 256, 512, 512),
            "down_block_types": ("DownEncoderBlock2D",) * 4,
            "up_block_types": ("UpDecoderBlock2D",) * 4,
            "layers_per_block": 2,
            "sample_size": 512,
        },
    )
