"""The `simulated-h100` model: a stand-in for planning, whose UNet call costs what an H100's does and computes nothing.

A district asks "how many GPUs for how many students?" long before it owns them.
This model answers it on a laptop: every part the service touches has SD 1.5's
shapes (CLIP's real tokenizer, 77 x 768 text vectors, a 4 x 64 x 64 latent, a
512 x 512 picture), but the UNet call only sleeps for as long as an H100 takes
for that batch and returns zeros, and the text encoder and the VAE are a few
cheap tensor operations. The sleep releases the GIL and runs on the service's
worker thread (`batching.BatchScheduler`), never on the event loop, so eight
replicas and four hundred students fit on two CPU cores. It draws nothing: its
pictures are coloured noise. It is never a default, says what it is in
GetModelInfo (model id, display name, description), and a service open to the
network refuses it unless CLASSROOM_ALLOW_SIMULATED_GPU is set (settings.py).

The cost of one UNet call, a + b x rows (each guided generation is two rows), is
fitted to docs/benchmarks.md, "Host copies and GPU idle time" (H100 80GB HBM3,
SD 1.5-shaped, float16, 512 px, the worker's own loop): 29.5 and 28.0 ms for one
student (2 rows), 194.4 and 191.0 ms for 32 (64 rows), runs A and B. The line
through the two pairs' means (28.75 ms at 2 rows, 192.7 ms at 64) gives
b = 2.644 ms a row and a = 23.46 ms. It agrees with the speed table's baseline in
the same section (147.1 guided steps/s at 32 students: 217.5 ms a step, of which
19 to 23 ms is guidance, the scheduler and copies). Only the UNet is simulated:
guidance, the scheduler, the copies and every frame's encoding are this
machine's real work, done as the service always does them.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import torch

from services.common.codecs import SD1_PREVIEW
from services.inference.diffusion.attention import CrossAttentionProbe
from services.inference.diffusion.models import ENCODINGS_KEPT, SD_FAMILY, DiffusionModel, ModelCard
from services.inference.diffusion.previews import LINEAR, VAE, PreviewDecoder, to_pixels
from services.inference.diffusion.tiny import SD1_SCHEDULER_CONFIG, SD1_SCHEDULER_EXTRA, clip_tokenizer
from services.inference.settings import SIMULATED, InferenceSettings

log = logging.getLogger(__name__)

SIMULATED_H100 = SIMULATED[0]


@dataclass(frozen=True)
class GpuCost:
    """What one UNet call costs on a GPU: `fixed_ms` whatever the batch, plus `per_row_ms` for each row."""

    name: str
    fixed_ms: float  # a: launching the call's kernels, reading the weights
    per_row_ms: float  # b: each row of the batch (a guided generation brings two)

    def unet_seconds(self, rows: int) -> float:
        return (self.fixed_ms + self.per_row_ms * rows) / 1000


# Fitted to the H100 figures in docs/benchmarks.md (see the module's docstring for which, and how).
H100 = GpuCost("H100 80GB HBM3, SD 1.5, float16, 512 px", fixed_ms=23.46, per_row_ms=2.644)
SIMULATED_GPUS = {SIMULATED_H100: H100}

# SD 1.5's numbers, reported by GetModelInfo as the shapes this stand-in keeps (DESIGN.md, "Facts").
_SD15_UNET = {
    "in_channels": 4,
    "sample_size": 64,
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "cross_attention_dim": 768,
}
_SD15_TEXT = {"hidden_size": 768, "num_hidden_layers": 12}
_SD15_VAE = {"block_out_channels": (128, 256, 512, 512), "scaling_factor": 0.18215}
_CROSS_ATTENTION_LAYERS = 16  # SD 1.5's UNet has 16 cross-attention layers (and 16 self-attention ones)


class SimulatedUNet(torch.nn.Module):
    """Sleeps for what the GPU would take for this batch, and predicts no noise (zeros of the input's shape)."""

    def __init__(self, cost: GpuCost, sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__()
        self.cost = cost
        self.sleep = sleep  # tests pass a recorder: the cost is checked without timing anything
        self.config = SimpleNamespace(**_SD15_UNET)
        self.probe: CrossAttentionProbe | None = None  # set by the model: maps of the right shape when asked

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        return_dict: bool = False,
    ) -> tuple[torch.Tensor]:
        self.sleep(self.cost.unet_seconds(sample.shape[0]))
        recording = self.probe.active if self.probe is not None else None
        if recording is not None:
            # Even attention over the 77 text positions at the latent's own grid: the shape a lesson reads, no meaning.
            rows, positions = len(recording.rows), encoder_hidden_states.shape[1]
            h, w = sample.shape[-2:]
            recording.sums[(h, w)] = torch.full((rows, positions, h, w), _CROSS_ATTENTION_LAYERS / positions)
            recording.layers[(h, w)] = _CROSS_ATTENTION_LAYERS
        return (torch.zeros_like(sample),)


class SimulatedTextEncoder(torch.nn.Module):
    """A fixed vector for each token at each position (seeded by both): SD 1.5's shape, none of its meaning."""

    def __init__(self) -> None:
        super().__init__()
        self.config = SimpleNamespace(**_SD15_TEXT)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor]:
        vectors = [self._vector(int(token), position) for position, token in enumerate(input_ids[0].tolist())]
        return (torch.stack(vectors)[None],)

    @functools.lru_cache(maxsize=2**14)  # noqa: B019 (one encoder per model, kept as long as the model)
    def _vector(self, token: int, position: int) -> torch.Tensor:
        """The vector of `token` at `position`, drawn once: most of a prompt's 77 positions are the same padding."""
        return torch.randn(self.config.hidden_size, generator=torch.Generator().manual_seed(token * 131 + position))


class SimulatedVAE(torch.nn.Module):
    """The decoder as the linear latent-to-RGB map, each latent cell painted as an 8 x 8 block: cheap, SD's sizes."""

    def __init__(self) -> None:
        super().__init__()
        self.config = SimpleNamespace(**_SD15_VAE)
        self.factor = 2 ** (len(_SD15_VAE["block_out_channels"]) - 1)
        self._rgb = torch.from_numpy(SD1_PREVIEW.factors.copy())  # [4 latent channels, 3 colours]

    def decode(self, latents: torch.Tensor, return_dict: bool = False) -> tuple[torch.Tensor]:
        rgb = self.cells(latents)
        return (rgb.repeat_interleave(self.factor, dim=2).repeat_interleave(self.factor, dim=3),)

    def cells(self, latents: torch.Tensor) -> torch.Tensor:
        """Each latent cell's colour, [n, 3, h, w] in [-1, 1]: `decode`'s picture before each is painted 8 x 8."""
        # `latents` arrive divided by the scaling factor, as diffusers' VAE takes them.
        scaled = latents.float() * self.config.scaling_factor
        return torch.einsum("nchw,cr->nrhw", scaled, self._rgb).clamp(-1, 1)


class SimulatedModel(DiffusionModel):
    """SD 1.5's shapes around a UNet that only sleeps; the service loads it as it loads any model."""

    def __init__(self, name: str, cost: GpuCost, sleep: Callable[[float], None] = time.sleep) -> None:
        # Not DiffusionModel.__init__: nothing is read from a model folder.
        self.model_id = name
        # In the cache key: a simulated trajectory is never served as a real model's, nor after the fit changes.
        self.revision = f"simulated-{cost.fixed_ms:g}+{cost.per_row_ms:g}ms-a-row"
        self.device, self.dtype = torch.device("cpu"), torch.float32
        self.tokenizer = clip_tokenizer()  # CLIP's real tokenizer: the token lessons stay true
        self.text_encoder = SimulatedTextEncoder()
        self.unet = SimulatedUNet(cost, sleep)
        self.vae = SimulatedVAE()
        self.cross_attention = CrossAttentionProbe(self.unet)  # finds no layer: the UNet fills its recordings
        self.unet.probe = self.cross_attention
        # As SD 1.5 out of the box: the linear preview per step (a decode every step is costly on a real GPU).
        self.preview_decoder = PreviewDecoder(LINEAR, None)
        self.scheduler_config = {"_class_name": "PNDMScheduler", **SD1_SCHEDULER_CONFIG, **SD1_SCHEDULER_EXTRA}
        self.card = ModelCard(
            family=SD_FAMILY,
            display_name=f"Simulated GPU ({name}): no model, for planning only",
            preview=SD1_PREVIEW,
            description=(
                f"Not a real model. Each step waits as long as one {cost.name} step takes "
                f"({cost.fixed_ms:g} ms + {cost.per_row_ms:g} ms a row) and computes nothing, "
                "so the pictures are noise. It is used to plan how many GPUs a district needs."
            ),
        )
        self.safety_checker, self.feature_extractor = None, None
        self._tokenizer_lock = threading.Lock()
        self.known_ids = None
        self._kept_encodings = functools.lru_cache(maxsize=ENCODINGS_KEPT)(self._encode)

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> list[np.ndarray]:
        """`DiffusionModel.decode`'s pictures, to the pixel, made at the latent's grid and then enlarged.

        The stand-in's picture is each cell's colour painted as an 8 x 8 block, and turning colours
        into pixels (`to_pixels`) goes colour by colour: so each cell is turned once and its pixels
        painted, not 64 times over in floats. The simulated GPU's final decodes are then this CPU's
        few milliseconds, not half a second for a class of 64 (the stand-in's own cost, which no
        GPU would spend on this machine's cores).
        """
        cells = self.vae.cells(latents / self.vae.config.scaling_factor)
        pixels = torch.stack([to_pixels(cells[i : i + 1]) for i in range(cells.shape[0])])
        n, h, w, _ = pixels.shape
        factor = self.vae.factor
        # Each pixel's three bytes moved as one item (numpy copies them as blocks): across, then down.
        items = np.ascontiguousarray(pixels.numpy()).view(np.dtype((np.void, 3)))
        painted = np.repeat(np.repeat(items, factor, axis=2), factor, axis=1)
        return list(painted.view(np.uint8).reshape(n, h * factor, w * factor, 3))

    @classmethod
    def simulated(cls, name: str, preview_decoder: str = "auto") -> SimulatedModel:
        """The named simulated GPU (`SIMULATED_GPUS`); CLASSROOM_PREVIEW_DECODER=vae decodes every step's guess."""
        model = cls(name, SIMULATED_GPUS[name])
        if preview_decoder == VAE:
            model.preview_decoder = PreviewDecoder(VAE, model.vae)
        return model


def load_model(settings: InferenceSettings) -> DiffusionModel:
    """The model the settings name: a simulated GPU only when named (never `auto`), else `DiffusionModel.load`."""
    if settings.model in SIMULATED:
        log.info("loading %s: a simulated GPU, no model, for planning only", settings.model)
        if settings.torch_threads is None:
            # Many replicas share a few cores; torch's pool of spinning threads made the same CPU work
            # 10 times slower on a busy 2-core machine (4 generations x 25 steps: 3.0 s, 0.29 s on one thread).
            torch.set_num_threads(1)
        return SimulatedModel.simulated(settings.model, settings.preview_decoder)
    return DiffusionModel.load(settings)
