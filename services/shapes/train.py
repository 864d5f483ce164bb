"""Training the Shapes model: the autoencoder first, then the UNet and the text encoder together.

The recipe, in the order a student would read it:

1. Train the VAE (`AutoencoderKL`, SD's latent layout: 4 channels, 8 times
   smaller than the picture) to reconstruct drawn pictures.
2. Encode a fixed set of pictures once; the scaling factor is chosen so that the
   latents have unit variance (SD 1.x's 0.18215 was chosen the same way).
3. Train the UNet to predict the noise added to those latents, reading the
   caption through cross-attention from a small CLIP text encoder trained with
   it. The caption is dropped 10% of the time, so the same model also knows the
   unconditional prediction that classifier-free guidance needs.

The loss is the noise prediction's squared error weighted by 1/ᾱ_t (the same
weighting as predicting v): plain noise-prediction loss gives the high-noise
steps almost no weight, and those are the only steps where the picture cannot be
read from the noisy latent itself, so plain loss learns to ignore the caption.

4. Fit the linear latent-to-RGB preview factors on the trained latents.
5. Save everything with `save_pretrained`, in float16, as SD 1.x is shipped.
"""

from __future__ import annotations

import copy
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from tqdm import tqdm
from transformers import CLIPTextModel

from services.inference.diffusion.models import CLASSROOM_FILE
from services.inference.diffusion.recipe import one_cycle, weighted_noise_loss
from services.inference.diffusion.teach import CAPTION_DROPOUT
from services.inference.diffusion.tiny import SD1_SCHEDULER_CONFIG, clip_text_config, clip_tokenizer, save_pipeline
from services.shapes import data
from services.shapes.localise import keep_cross_attention, localisation_loss, shape_masks, word_positions

log = logging.getLogger(__name__)

IMAGE_SIZE = data.IMAGE_SIZE
# The most denoising steps the service offers on it (the card's max_steps): its lessons use at
# most 50, and 100 lets a student see that more steps change little, at a few seconds a CPU picture.
MAX_STEPS = 100


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; the model card records it."""

    seed: int = 0
    vae_steps: int = 1200  # autoencoder steps at vae_batch
    vae_batch: int = 32
    vae_lr: float = 1e-3
    pictures: int = 40_000  # pictures encoded once for the UNet's training
    unet_steps: int = 3000  # UNet + text encoder steps at unet_batch
    unet_batch: int = 64
    unet_lr: float = 1e-3
    caption_dropout: float = CAPTION_DROPOUT  # share of captions replaced by "" (for classifier-free guidance)
    ema_decay: float = 0.998  # the saved weights are this moving average of the trained ones
    eval_every: int = 250  # steps between quick accuracy checks (0: never)
    attention_weight: float = 0.0  # weight of the cross-attention localisation loss (localise.py; 0: off)
    attention_words: str = "colour,shape"  # the kinds of word that loss trains to look at the shape
    train_only: str = ""  # "attention-routing": only the cross-attention's queries and keys learn (a gentle fine-tune)


def vae_config() -> dict:
    # Four blocks: three halvings, so the latent is 1/8 of the picture as in SD.
    return {
        "in_channels": 3,
        "out_channels": 3,
        "latent_channels": 4,
        "block_out_channels": (16, 32, 32, 32),
        "down_block_types": ("DownEncoderBlock2D",) * 4,
        "up_block_types": ("UpDecoderBlock2D",) * 4,
        "layers_per_block": 1,
        "norm_num_groups": 8,
        "sample_size": IMAGE_SIZE,
    }


def text_config() -> dict:
    # CLIP's own vocabulary and 77 positions (from clip_text_config); 2 layers of 64 numbers instead of 12 of 768.
    return {
        "hidden_size": 64,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
    }


def unet_config() -> dict:
    # SD's UNet, scaled down: two resolutions (8x8 and 4x4), cross-attention at both and in the middle.
    return {
        "sample_size": IMAGE_SIZE // 8,
        "in_channels": 4,
        "out_channels": 4,
        "block_out_channels": (64, 128),
        "layers_per_block": 1,
        "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        "cross_attention_dim": 64,
        "attention_head_dim": 8,
        "norm_num_groups": 32,
    }


def _progress(total: int, label: str) -> tqdm:
    return tqdm(total=total, desc=label, unit="step", mininterval=5.0, smoothing=0.05)


# -- 1. the autoencoder --------------------------------------------------------


def train_vae(config: TrainConfig) -> AutoencoderKL:
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    vae = AutoencoderKL(**vae_config())
    optimiser = torch.optim.AdamW(vae.parameters(), lr=config.vae_lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, config.vae_lr, total_steps=config.vae_steps)
    background = torch.tensor(data.BACKGROUND, dtype=torch.float32).view(1, 3, 1, 1) / 127.5 - 1
    vae.train()
    with _progress(config.vae_steps, "autoencoder") as bar:
        for _ in range(config.vae_steps):
            pixels = torch.from_numpy(data.batch(rng, config.vae_batch, IMAGE_SIZE)[0])
            posterior = vae.encode(pixels).latent_dist
            reconstruction = vae.decode(posterior.sample()).sample
            # The shape is a small part of the picture: its pixels (and a rim around them) count ten
            # times, or the autoencoder learns the background well and the shapes' colours and corners
            # badly. L1 keeps edges and flat colours sharp; a whisper of KL keeps the latent tame.
            shape = ((pixels - background).abs().amax(dim=1, keepdim=True) > 0.1).float()
            weight = 1 + 9 * F.max_pool2d(shape, 3, stride=1, padding=1)
            error = (weight * (reconstruction - pixels).abs()).sum() / (weight.sum() * 3)
            loss = error + 1e-6 * posterior.kl().mean()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            bar.set_postfix(l1=f"{loss.item():.4f}", refresh=False)
            bar.update()
    return vae.eval().requires_grad_(False)


# -- 2. the latents, once --------------------------------------------------------


@torch.no_grad()
def encode_pictures(vae: AutoencoderKL, config: TrainConfig) -> tuple[torch.Tensor, list[str], torch.Tensor]:
    """The latent (posterior mean, unscaled) of `config.pictures` fresh pictures, their captions and shape masks."""
    rng = random.Random(config.seed + 1)
    latents, captions, masks = [], [], []
    for start in tqdm(range(0, config.pictures, 500), desc="encoding", mininterval=5.0):
        pixels, words = data.batch(rng, min(500, config.pictures - start), IMAGE_SIZE)
        latents.append(vae.encode(torch.from_numpy(pixels)).latent_dist.mean)
        masks.append(shape_masks(pixels, latents[-1].shape[-1]))
        captions += words
    return torch.cat(latents), captions, torch.cat(masks)


# -- 3. the UNet and the text encoder ----------------------------------------------


class _Ema:
    """An exponential moving average of a module's weights (what gets saved)."""

    def __init__(self, module: torch.nn.Module, decay: float) -> None:
        self.module = copy.deepcopy(module).eval().requires_grad_(False)
        self.decay = decay

    @torch.no_grad()
    def update(self, module: torch.nn.Module, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))  # short memory while training starts
        for mine, theirs in zip(self.module.parameters(), module.parameters(), strict=True):
            mine.lerp_(theirs, 1 - decay)


def train_denoiser(
    latents: torch.Tensor,
    captions: list[str],
    config: TrainConfig,
    evaluate: Callable[[UNet2DConditionModel, CLIPTextModel, int], dict[str, float]] | None = None,
    start_from: Path | None = None,
    masks: torch.Tensor | None = None,
) -> tuple[UNet2DConditionModel, CLIPTextModel]:
    """Train the UNet and text encoder on scaled latents (from scratch, or on from a saved model).

    With `config.attention_weight` and the pictures' shape `masks`, the colour and
    shape words' cross-attention maps are trained to sit on the shape too (localise.py).
    """
    torch.manual_seed(config.seed + 2)
    generator = torch.Generator().manual_seed(config.seed + 3)
    tokenizer = clip_tokenizer()
    ids = tokenizer(captions, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    empty = tokenizer([""], padding="max_length", max_length=77, return_tensors="pt").input_ids

    if start_from is None:
        unet = UNet2DConditionModel(**unet_config())
        text_encoder = CLIPTextModel(clip_text_config(**text_config()))
    else:
        unet = UNet2DConditionModel.from_pretrained(start_from / "unet", torch_dtype=torch.float32)
        text_encoder = CLIPTextModel.from_pretrained(start_from / "text_encoder", dtype=torch.float32)
    noise_schedule = DDPMScheduler.from_config(SD1_SCHEDULER_CONFIG)
    alphas_cumprod = noise_schedule.alphas_cumprod
    if config.train_only not in ("", "attention-routing"):
        raise ValueError(f"unknown --train-only {config.train_only!r}")
    if config.train_only == "attention-routing":
        # Where each pixel looks changes; what it reads there (values, everything else) stays as trained.
        text_encoder.requires_grad_(False)
        for name, parameter in unet.named_parameters():
            parameter.requires_grad_(".attn2.to_q." in name or ".attn2.to_k." in name)
    # Unused vocabulary rows must not decay: no weight decay on the text side.
    optimiser = torch.optim.AdamW(
        [
            {"params": [p for p in unet.parameters() if p.requires_grad], "weight_decay": 1e-2},
            {"params": [p for p in text_encoder.parameters() if p.requires_grad], "weight_decay": 0.0},
        ],
        lr=config.unet_lr,
    )
    schedule = one_cycle(optimiser, config.unet_lr, config.unet_steps, warmup=0.05)
    ema_unet, ema_text = _Ema(unet, config.ema_decay), _Ema(text_encoder, config.ema_decay)
    localising = config.attention_weight > 0
    if localising and masks is None:
        raise ValueError("the localisation loss needs the pictures' shape masks")
    positions = word_positions(captions, tuple(config.attention_words.split(",")))
    kept = keep_cross_attention(unet) if localising else []
    unet.train()
    text_encoder.train()
    with _progress(config.unet_steps, "denoiser") as bar:
        for step in range(config.unet_steps):
            index = torch.randint(0, len(latents), (config.unet_batch,), generator=generator)
            clean = latents[index]
            tokens = ids[index]
            dropped = torch.rand(config.unet_batch, generator=generator) < config.caption_dropout
            tokens[dropped] = empty
            t = torch.randint(0, len(alphas_cumprod), (config.unet_batch,), generator=generator)
            noise = torch.randn(clean.shape, generator=generator)
            noisy = noise_schedule.add_noise(clean, noise, t)
            prediction = unet(noisy, t, text_encoder(tokens)[0]).sample
            loss = weighted_noise_loss(prediction, noise, alphas_cumprod[t])  # 1/alpha-bar: noise plus clean latent
            if localising:
                assert masks is not None
                words = positions[index].masked_fill(dropped[:, None], -1)  # a dropped caption has no words
                loss = loss + config.attention_weight * localisation_loss(kept, masks[index], words)
                kept.clear()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([*unet.parameters(), *text_encoder.parameters()], 1.0)
            optimiser.step()
            schedule.step()
            ema_unet.update(unet, step)
            ema_text.update(text_encoder, step)
            bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
            bar.update()
            if evaluate and config.eval_every and (step + 1) % config.eval_every == 0:
                scores = evaluate(ema_unet.module, ema_text.module, step + 1)
                bar.write(f"step {step + 1}: " + ", ".join(f"{k} {v:.2f}" for k, v in scores.items()))
    return ema_unet.module, ema_text.module


# -- 4. preview factors ----------------------------------------------------------


@torch.no_grad()
def fit_preview_factors(vae: AutoencoderKL, scaled_latents: torch.Tensor) -> dict[str, list]:
    """Least-squares map from a latent pixel's 4 numbers to the RGB (in [-1, 1]) of its 8x8 patch."""
    sample = scaled_latents[:2000]
    pictures = vae.decode(sample / vae.config.scaling_factor).sample.clamp(-1, 1)
    patches = F.avg_pool2d(pictures, 8)  # [n, 3, h, w], one colour per latent pixel
    x = sample.permute(0, 2, 3, 1).reshape(-1, 4)
    y = patches.permute(0, 2, 3, 1).reshape(-1, 3)
    design = torch.cat([x, torch.ones(len(x), 1)], dim=1)
    solution = torch.linalg.lstsq(design, y).solution  # [5, 3]: four factor rows, then the bias
    return {"factors": solution[:4].tolist(), "bias": solution[4].tolist()}


# -- 5. the whole recipe -----------------------------------------------------------


def train(
    out: Path,
    config: TrainConfig,
    evaluate_every: bool = True,
    vae_from: Path | None = None,
    start_from: Path | None = None,
) -> Path:
    """Run the whole recipe and save a diffusers-format model to `out`.

    `vae_from`: an autoencoder already trained (skips step 1). `start_from`: a saved
    Shapes model whose autoencoder, UNet and text encoder training goes on from.
    """
    if start_from is not None:
        vae_from = start_from / "vae"
    started = time.perf_counter()
    if vae_from is not None:
        vae = AutoencoderKL.from_pretrained(vae_from, torch_dtype=torch.float32).eval().requires_grad_(False)
    else:
        vae = train_vae(config)
        vae.save_pretrained(out / "vae")  # kept early, so a later run can start from it (--vae-from)
        if config.unet_steps == 0:
            return out  # the autoencoder alone, to look at before the long part
    raw, captions, masks = encode_pictures(vae, config)
    scaling_factor = float(1.0 / raw.std())
    vae.register_to_config(scaling_factor=scaling_factor)
    scaled = raw * scaling_factor
    vae_seconds = time.perf_counter() - started
    log.info("autoencoder done in %.0f s; latent scaling factor %.4f", vae_seconds, scaling_factor)

    evaluate = None
    if evaluate_every:
        from services.shapes.quick_eval import QuickEval

        evaluate = QuickEval(vae, clip_tokenizer(), out / "progress")
    unet, text_encoder = train_denoiser(scaled, captions, config, evaluate, start_from, masks)

    preview_factors = fit_preview_factors(vae, scaled)  # before the float16 cast below
    folder = save_pipeline(out, text_encoder=text_encoder, unet=unet, vae=vae, dtype=torch.float16)
    card = {
        "family": "shapes",
        "display_name": "Shapes",
        "preview": preview_factors,
        "held_out_pairs": [f"{colour} {shape}" for colour, shape in sorted(data.HELD_OUT_PAIRS)],
        "description": data.describe(),
        "vocabulary": data.vocabulary(),  # Tokenize marks every other piece as never learned
        "max_steps": MAX_STEPS,
    }
    (folder / CLASSROOM_FILE).write_text(json.dumps(card, indent=2))
    seconds = round(time.perf_counter() - started)
    record = {"config": asdict(config), "seconds": seconds, "scaling_factor": scaling_factor,
              "started_from": str(start_from) if start_from else None}  # fmt: skip
    (folder / "training.json").write_text(json.dumps(record, indent=2))
    return folder
