"""The `tiny` model: Stable-Diffusion-shaped, random weights, the real CLIP vocabulary.

It lets everything run offline and fast (tests, demos on a laptop) through the
same `from_pretrained` code path as real weights. It draws nothing meaningful:
the pictures are noise-like, but every tensor has the shape and flow of SD 1.x.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

# Bump when the recipe below changes, so an old build on disk is not reused.
TINY_VERSION = "3"
TINY_SEED = 0

# SD 1.x's scheduler settings (scaled-linear betas over 1,000 training steps).
SD1_SCHEDULER_CONFIG = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
}
# Keys the saved scheduler config carries for the other schedulers' sake, as SD
# 1.5's own scheduler_config.json does (PNDM does not take them itself).
SD1_SCHEDULER_EXTRA = {"clip_sample": False}


def _clip_bpe_lines() -> list[str]:
    """The lines of CLIP's BPE file, shipped in the `openai-clip` package (not imported: it needs torchvision)."""
    spec = importlib.util.find_spec("clip")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("The 'openai-clip' package is needed to build the tiny model's tokenizer.")
    path = Path(next(iter(spec.submodule_search_locations))) / "bpe_simple_vocab_16e6.txt.gz"
    return gzip.decompress(path.read_bytes()).decode("utf-8").split("\n")


def _bytes_to_unicode() -> list[str]:
    """GPT-2's byte-level alphabet: 256 printable characters standing for the 256 byte values."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = [], 0
    for byte in range(256):
        if byte in printable:
            chars.append(chr(byte))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    # Printable bytes keep their own character and come first, in byte order.
    order = printable + [b for b in range(256) if b not in printable]
    return [chars[b] for b in order]


def write_clip_tokenizer(folder: Path) -> None:
    """Write CLIP's tokenizer (49,408-entry vocabulary and its merges) in Hugging Face's format."""
    folder.mkdir(parents=True, exist_ok=True)
    merges = [line for line in _clip_bpe_lines()[1 : 49152 - 256 - 2 + 1]]
    alphabet = _bytes_to_unicode()
    vocab = alphabet + [c + "</w>" for c in alphabet] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({piece: i for i, piece in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "model_max_length": 77,
                "bos_token": "<|startoftext|>",
                "eos_token": "<|endoftext|>",
                "unk_token": "<|endoftext|>",
                "pad_token": "<|endoftext|>",
                "do_lower_case": True,
                "tokenizer_class": "CLIPTokenizer",
            }
        )
    )


@functools.cache
def clip_tokenizer() -> CLIPTokenizer:
    """CLIP's tokenizer, written once per process to a scratch folder and loaded as a model would load it."""
    folder = Path(tempfile.mkdtemp(prefix="clip-tokenizer-"))
    write_clip_tokenizer(folder)
    return CLIPTokenizer.from_pretrained(folder)


def clip_text_config(**sizes: Any) -> CLIPTextConfig:
    """A CLIP text encoder's config: CLIP's vocabulary, special tokens and 77 positions, at the given sizes."""
    clip = {"vocab_size": 49408, "max_position_embeddings": 77}
    clip |= {"bos_token_id": 49406, "eos_token_id": 49407, "pad_token_id": 49407}
    return CLIPTextConfig(**clip, **sizes)


def save_pipeline(
    folder: Path,
    text_encoder: CLIPTextModel,
    unet: UNet2DConditionModel,
    vae: AutoencoderKL,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Save SD 1.x-shaped components as a diffusers model folder, with CLIP's tokenizer and SD 1.x's scheduler."""
    write_clip_tokenizer(folder / "tokenizer")
    pipeline = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=CLIPTokenizer.from_pretrained(folder / "tokenizer"),
        unet=unet,
        scheduler=PNDMScheduler(**SD1_SCHEDULER_CONFIG),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.to(dtype=dtype)
    pipeline.save_pretrained(folder)
    config_path = folder / "scheduler" / "scheduler_config.json"
    config_path.write_text(json.dumps(json.loads(config_path.read_text()) | SD1_SCHEDULER_EXTRA, indent=2))
    return folder


def save_sd_model(folder: Path, text: dict[str, Any], unet: dict[str, Any], vae: dict[str, Any]) -> Path:
    """Assemble an SD 1.x-shaped model with random weights (sizes given) and save it with save_pretrained.

    What every such model shares is filled in here: CLIP's vocabulary and
    special tokens, 77 positions, 4 latent channels, the VAE scaling factor and
    SD 1.x's scheduler.
    """
    # Built in this order (VAE, text encoder, UNet), so a seed gives the same weights as before.
    random_vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, scaling_factor=0.18215, **vae)
    random_text_encoder = CLIPTextModel(clip_text_config(**text))
    random_unet = UNet2DConditionModel(in_channels=4, out_channels=4, **unet)
    return save_pipeline(folder, text_encoder=random_text_encoder, unet=random_unet, vae=random_vae)


def build_tiny_model(folder: Path) -> Path:
    """Build the tiny model deterministically and save it to `folder` with save_pretrained."""
    torch.manual_seed(TINY_SEED)
    save_sd_model(
        folder,
        text={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4},
        # Cross-attention only at the lower resolution keeps 512 px (64x64 latents) quick.
        unet={
            "sample_size": 64,
            "block_out_channels": (32, 64),
            "layers_per_block": 1,
            "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
            "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
            "cross_attention_dim": 32,
            "attention_head_dim": 8,
            "norm_num_groups": 8,
        },
        # Four blocks: three halvings, so the latent is 1/8 of the image as in SD.
        vae={
            "block_out_channels": (8, 16, 32, 32),
            "down_block_types": ("DownEncoderBlock2D",) * 4,
            "up_block_types": ("UpDecoderBlock2D",) * 4,
            "layers_per_block": 1,
            "norm_num_groups": 8,
            "sample_size": 512,
        },
    )
    card = {"family": "stable-diffusion", "display_name": "Tiny (random weights)"}
    (folder / "classroom.json").write_text(json.dumps(card))  # models.CLASSROOM_FILE
    (folder / "TINY_VERSION").write_text(TINY_VERSION)
    return folder


def ensure_tiny_model(folder: Path) -> Path:
    """Return the folder of a tiny model of the current version, building it if needed.

    The build goes to a temporary folder that is renamed into place, so two
    processes starting at once never load a half-written model.
    """
    marker = folder / "TINY_VERSION"
    if marker.exists() and marker.read_text() == TINY_VERSION:
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{folder.name}-") as scratch:
        built = build_tiny_model(Path(scratch) / "model")
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
        try:
            os.replace(built, folder)
        except OSError:
            if not (marker.exists() and marker.read_text() == TINY_VERSION):
                raise  # someone else's build did not land either
    return folder
