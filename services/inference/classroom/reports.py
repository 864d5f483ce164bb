"""What the classroom reports about itself: the model and its limits, the lesson listing, its figures.

The Classroom answers with these (`model_info`, `lessons`, `stats`), so that the
adapters (`api/`) translate its answers and never read its model, catalog or
store themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from services.common.api import pb
from services.inference.classroom.lessons import CatalogEntry
from services.inference.classroom.validation import Limits
from services.inference.diffusion.jobs import SchedulerStats
from services.inference.diffusion.models import DiffusionModel, parameter_count
from services.inference.diffusion.probes import PROBES
from services.inference.diffusion.schedulers import SCHEDULERS
from services.inference.settings import InferenceSettings
from services.inference.trajectories.cache import CacheStats
from services.inference.trajectories.hub import HubStats
from services.lessons.catalog import Collection


@dataclass(frozen=True)
class Blocked:
    """A prompt the blocklist refused: who, when, and what (shown to the teacher only on request)."""

    student_name: str
    unix_time: float
    prompt: str


@dataclass(frozen=True)
class ServerStats:
    """What the service has done since it started (the teacher's page and GetServerStats)."""

    scheduler: SchedulerStats
    hub: HubStats
    cache: CacheStats
    cache_available: bool
    cache_status: str
    blocked_prompts: int


@dataclass(frozen=True)
class LessonListing:
    """The lessons a client is offered: the catalog's version, its collections, entries with cache states."""

    catalog_version: int
    collections: list[Collection]
    entries: list[tuple[CatalogEntry, int]]  # (entry, pb.CacheState)
    cache_available: bool


def model_info(
    model: DiffusionModel, settings: InferenceSettings, limits: Limits, default_include: frozenset[str]
) -> pb.GetModelInfoResponse:
    """The model this server runs, its defaults, and the limits and schedulers it offers with it."""
    factor = model.vae_downsample_factor
    return pb.GetModelInfoResponse(
        model_id=model.model_id,
        model_revision=model.revision,
        device=str(model.device),
        dtype=str(model.dtype).removeprefix("torch."),
        default_width=model.default_size,
        default_height=model.default_size,
        default_steps=settings.default_steps,
        default_guidance_scale=settings.default_guidance_scale,
        default_scheduler=settings.default_scheduler,
        latent_channels=model.latent_channels,
        vae_downsample_factor=factor,
        latent_shape_rule=f"[{model.latent_channels}, height / {factor}, width / {factor}]",
        vae_scaling_factor=float(model.vae.config.scaling_factor),
        schedulers=[
            pb.SchedulerInfo(
                name=spec.name,
                display_name=spec.display_name,
                description=spec.description,
                ancestral=spec.ancestral,
                sigma_space=spec.sigma_space,
            )
            for spec in SCHEDULERS.values()
            if spec.name in limits.schedulers  # those the model's card leaves out are not offered
        ],
        limits=limits.to_proto(),  # the settings', narrowed to this model
        text_max_length=model.max_length,
        text_hidden_size=int(model.text_encoder.config.hidden_size),
        text_encoder_layers=int(model.text_encoder.config.num_hidden_layers),
        tokenizer_vocab_size=len(model.tokenizer),
        prediction_type=str(model.scheduler_config.get("prediction_type", "epsilon")),
        num_train_timesteps=int(model.scheduler_config.get("num_train_timesteps", 1000)),
        include_paths=list(PROBES),
        default_include_paths=[name for name in PROBES if name in default_include],
        model_family=model.card.family,
        model_display_name=model.card.display_name,
        unet_block_out_channels=list(model.unet.config.block_out_channels),
        unet_layers_per_block=int(model.unet.config.layers_per_block),
        unet_cross_attention_dim=int(model.unet.config.cross_attention_dim),
        unet_parameters=parameter_count(model.unet),
        text_encoder_parameters=parameter_count(model.text_encoder),
        vae_parameters=parameter_count(model.vae),
        held_out_pairs=list(model.card.held_out_pairs),
        model_description=model.card.description,
    )


def device_memory(model: DiffusionModel) -> tuple[str, int, int]:
    """The device the model runs on, and (used, total) bytes of GPU memory; (0, 0) on a CPU."""
    if model.device.type != "cuda":
        return str(model.device), 0, 0
    free, total = torch.cuda.mem_get_info(model.device)
    return str(model.device), total - free, total
