"""The denoising loop of one generation, step by step, as the lessons tell it.

Our own loop over the diffusers components rather than the pipeline's
`__call__`, so that every intermediate tensor can be shown and several
students' steps can share one UNet call (see `batching.py`). For the same
model, seed and settings it computes what `StableDiffusionPipeline` computes,
except that guidance `u + g * (c - u)` is applied at every g (see `Generation`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor

from services.inference.diffusion.attention import AttentionMaps, eager
from services.inference.diffusion.models import DiffusionModel, PromptEmbedding, PromptTokens
from services.inference.diffusion.schedulers import new_scheduler, predicted_x0, sigma_at, step_kwargs
from services.inference.diffusion.spec import GenerationSpec

log = logging.getLogger(__name__)


# -- what a generation emits ------------------------------------------------
# Plain host arrays, so that encoding them for the wire happens off this thread.


@dataclass(frozen=True)
class EncodedPrompt:
    text: str
    tokens: PromptTokens
    embeddings: np.ndarray | None  # float16 [max_length, hidden], when asked for
    token_norms: np.ndarray  # float32 [max_length]

    @classmethod
    def from_embedding(cls, text: str, encoding: PromptEmbedding, with_embeddings: bool) -> EncodedPrompt:
        vectors = encoding.embeddings[0]
        return cls(
            text=text,
            tokens=encoding.tokens,
            embeddings=vectors.to(torch.float16).cpu().numpy() if with_embeddings else None,
            token_norms=vectors.float().norm(dim=-1).cpu().numpy(),
        )


@dataclass(frozen=True)
class HeaderEvent:
    spec: GenerationSpec
    prompt: EncodedPrompt
    negative_prompt: EncodedPrompt
    timesteps: list[float]
    sigmas: list[float]
    initial_latent: HostCopy  # float16 [4, h, w]


@dataclass(frozen=True)
class AttentionCopy:
    """One step's cross-attention maps on their way to the host (start, prompt pieces, end; no padding)."""

    maps: HostCopy  # float16 [tokens, h, w]
    resolutions: list[tuple[int, int, int, HostCopy]]  # (height, width, layers, float16 [tokens, height, width])

    @classmethod
    def of(cls, attention: AttentionMaps, tokens: int) -> AttentionCopy:
        return cls(
            maps=HostCopy(attention.maps[None, :tokens]),
            resolutions=[(r.height, r.width, r.layers, HostCopy(r.maps[None, :tokens])) for r in attention.resolutions],
        )


@dataclass(frozen=True)
class StepEvent:
    step_index: int
    total_steps: int
    timestep: float
    sigma: float | None
    latent: HostCopy  # float16 [4, h, w]
    predicted_x0: HostCopy
    noise: tuple[HostCopy, HostCopy, HostCopy]  # unconditional, conditional, guided
    unet: Stopwatch  # the UNet call this step shared with its batch
    scheduler: Stopwatch  # guidance, the scheduler's step, x0 and the copies, for this generation
    batch_size: int
    # The probes computed only when asked (see probes.py).
    cross_attention: AttentionCopy | None = None
    decoded_x0: HostCopy | None = None  # uint8 [H, W, 3]: x0 through `decoder`
    decoder: str = ""  # "vae", "taesd" or "linear" when the decoded picture was asked for
    decode: Stopwatch | None = None  # the decode of x0, when asked for and the model has a decoder

    @property
    def unet_seconds(self) -> float:
        return self.unet.seconds

    @property
    def scheduler_seconds(self) -> float:
        return self.scheduler.seconds

    @property
    def decode_seconds(self) -> float:
        return self.decode.seconds if self.decode is not None else 0.0

    @property
    def step_seconds(self) -> float:
        return self.unet_seconds + self.scheduler_seconds + self.decode_seconds

    def copied(self) -> None:
        """Wait until this step's probes have reached the host (once they have, at no cost)."""
        copies = [self.latent, self.predicted_x0, *self.noise]
        if self.cross_attention is not None:
            copies += [self.cross_attention.maps, *(maps for *_, maps in self.cross_attention.resolutions)]
        if self.decoded_x0 is not None:
            copies.append(self.decoded_x0)
        for copy in copies:
            copy.wait()


@dataclass(frozen=True)
class FinalEvent:
    image: np.ndarray  # uint8 [H, W, 3]
    flagged: bool  # by the safety checker: the image is sent blurred
    text_encoder_seconds: float
    denoising_seconds: float
    vae_decode_seconds: float
    total_seconds: float
    queue_seconds: float


@dataclass(frozen=True)
class QueueEvent:
    """Before a generation starts: its place in the queue."""

    position: int  # 1: next to start
    waiting: int


@dataclass(frozen=True)
class ErrorEvent:
    message: str  # a sentence for the student; details go to the log
    aborted: bool = False  # stopped on purpose (the teacher cleared the queue), not a failure


Event = QueueEvent | HeaderEvent | StepEvent | FinalEvent | ErrorEvent


class HostCopy:
    """A float16 (or `dtype`) copy of one sample on its way to the host, as it travels on the wire.

    On a GPU the copy is started without waiting (into pinned memory, with an
    event behind it); whoever encodes the frame waits for it, off the runner's thread.
    """

    def __init__(self, tensor: torch.Tensor, dtype: torch.dtype = torch.float16) -> None:
        self._ready: torch.cuda.Event | None = None
        if tensor.device.type == "cuda":
            sample = tensor[0].to(dtype)
            self._host = torch.empty(sample.shape, dtype=dtype, pin_memory=True)
            self._host.copy_(sample, non_blocking=True)
            self._ready = torch.cuda.Event()
            self._ready.record()
        else:
            # One conversion that is also a copy of its own: later steps must not change what was sent.
            self._host = tensor[0].to(dtype, copy=True)

    def wait(self) -> None:
        """Until the copy is on the host (the device's work queued before it is done too)."""
        if self._ready is not None:
            self._ready.synchronize()

    def numpy(self) -> np.ndarray:
        self.wait()
        return self._host.numpy()


class Stopwatch:
    """The seconds a stretch of device work took, read after the work is done, never waited for on the way.

    On a GPU, two timing events around the work, so the worker can queue the next
    step before this one ends (a synchronisation per step leaves the GPU idle while
    Python prepares the next); on the CPU the work is done when the call returns.
    """

    def __init__(self, device: torch.device) -> None:
        self._seconds: float | None = None
        self._start: torch.cuda.Event | None = None
        self._end: torch.cuda.Event | None = None
        self._started = time.perf_counter()
        if device.type == "cuda":
            self._start = torch.cuda.Event(enable_timing=True)
            self._start.record()

    def stop(self) -> Stopwatch:
        if self._start is None:
            self._seconds = time.perf_counter() - self._started
        else:
            self._end = torch.cuda.Event(enable_timing=True)
            self._end.record()
        return self

    @property
    def seconds(self) -> float:
        """The work's seconds (waits for its end, if it is still running on the device)."""
        if self._seconds is None:
            if self._start is None or self._end is None:
                raise RuntimeError("the stopwatch was never stopped")
            self._end.synchronize()
            self._seconds = self._start.elapsed_time(self._end) / 1e3
        return self._seconds


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (to time it); nothing to wait for on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def starting_noise(
    shape: tuple[int, ...], generator: torch.Generator, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """Gaussian noise from the seed: the same numbers on every machine, whatever the model's precision.

    Drawn in float32 on the CPU, then cast and moved. Drawing in the model's own dtype
    would not do: the CPU draws other numbers for float16 than for float32, so a GPU
    (float16) and a CPU (float32) would start the same seed from different noise, and
    a lesson precomputed on one would not be the picture the other makes.
    """
    noise = randn_tensor(shape, generator=generator, device=torch.device("cpu"), dtype=torch.float32)
    return noise.to(device=device, dtype=dtype)


def predict_noise(model: DiffusionModel, generations: list[Generation]) -> tuple[list[torch.Tensor], Stopwatch]:
    """4a. The UNet on both branches of every generation in a batch, in one call.

    Each generation brings its latent twice (unconditional, conditional), its own
    timestep and its two texts; they are stacked, run through the UNet once, and
    each gets its own pair of noise predictions back, with the call's stopwatch
    (on a GPU the call is only queued when this returns). Generations that asked
    for cross-attention maps get those of their conditional branch
    (`Generation.attention`), recorded beside the same call.
    """
    inputs = [g.model_input() for g in generations]
    latents = torch.cat([latent for latent, _, _ in inputs])
    timesteps = torch.cat([t.reshape(1).float().expand(latent.shape[0]) for latent, t, _ in inputs])
    embeddings = torch.cat([text for _, _, text in inputs])
    sizes = [latent.shape[0] for latent, _, _ in inputs]
    # The conditional branch is the last row of each generation's pair.
    ends = np.cumsum(sizes)
    watched = [(int(end) - 1, g) for end, g in zip(ends, generations, strict=True) if g.wants_attention]
    stopwatch = Stopwatch(model.device)
    if not watched:
        noise = model.unet(latents, timesteps.to(latents.device), encoder_hidden_states=embeddings, return_dict=False)
    else:
        # The maps are recorded beside this very call (see attention.py), by the UNet as
        # Python runs it: a compiled UNet's graphs would not run the probe.
        rows = [row for row, _ in watched]
        with model.cross_attention.recording(rows, tuple(latents.shape[-2:]), latents.device) as recording:
            noise = eager(model.unet)(
                latents, timesteps.to(latents.device), encoder_hidden_states=embeddings, return_dict=False
            )
            for (_, generation), maps in zip(watched, recording.results(), strict=True):
                generation.attention = maps
    return list(noise[0].split(sizes)), stopwatch.stop()


class Generation:
    """One request's state: its own scheduler, generator, latents and embeddings.

    The UNet call is left to the caller (`model_input` in, `finish_step` out),
    so that the batching runner can run one UNet call for several generations.
    """

    def __init__(self, model: DiffusionModel, spec: GenerationSpec) -> None:
        self.model = model
        self.spec = spec
        self.step_index = 0
        self.timings = {"text_encoder": 0.0, "vae_decode": 0.0}
        self.denoising: list[Stopwatch] = []  # every step's device work, read when the generation ends
        # The costly probes, only when asked (see probes.py).
        self.wants_attention = "cross_attention" in spec.include
        self.wants_decoded_x0 = "decoded_x0_preview" in spec.include
        self.attention: AttentionMaps | None = None  # this step's maps, left here by `predict_noise`

    @property
    def done(self) -> bool:
        return self.step_index >= len(self.timesteps)

    @torch.inference_mode()
    def start(self) -> HeaderEvent:
        model, spec = self.model, self.spec
        started = time.perf_counter()

        # 1. Encode the prompt, and the negative prompt (or "") for the unconditional branch.
        negative = model.encode(spec.negative_prompt)
        prompt = model.encode(spec.prompt)
        self.embeddings = torch.cat([negative.embeddings, prompt.embeddings])
        # The maps keep the start token, the prompt's pieces and the end token; padding is dropped.
        self.attention_tokens = prompt.tokens.end_position + 1
        # A branching request (lesson 8) reads other texts from step `at_step` on: encoded now, swapped then.
        self.branch_embeddings, self.branch_attention_tokens = self.embeddings, self.attention_tokens
        if spec.branch is not None:
            branch_prompt = model.encode(spec.branch.prompt)
            branch_negative = model.encode(spec.branch.negative_prompt)
            self.branch_embeddings = torch.cat([branch_negative.embeddings, branch_prompt.embeddings])
            self.branch_attention_tokens = branch_prompt.tokens.end_position + 1
        self.timings["text_encoder"] = time.perf_counter() - started

        # 2. A fresh scheduler for this request, and the noise levels it will visit.
        self.scheduler = new_scheduler(spec.scheduler, model.scheduler_config)
        self.scheduler.set_timesteps(spec.steps, device=model.device)
        self.timesteps = self.scheduler.timesteps

        # 3. The starting noise from the seed, scaled to the scheduler's initial noise level.
        self.generator = torch.Generator("cpu").manual_seed(spec.seed)
        factor = model.vae_downsample_factor
        shape = (1, model.latent_channels, spec.height // factor, spec.width // factor)
        noise = starting_noise(shape, self.generator, model.device, model.dtype)
        self.latents = noise * self.scheduler.init_noise_sigma
        self.extra_step_kwargs = step_kwargs(self.scheduler, self.generator)

        # Host copies of the schedule: reading a device tensor at every step would wait for the device.
        self.timestep_values = [float(t) for t in self.timesteps]
        self.sigma_values = [sigma_at(self.scheduler, i) for i in range(len(self.timesteps))]
        with_embeddings = "embeddings" in spec.include
        return HeaderEvent(
            spec=spec,
            prompt=EncodedPrompt.from_embedding(spec.prompt, prompt, with_embeddings),
            negative_prompt=EncodedPrompt.from_embedding(spec.negative_prompt, negative, with_embeddings),
            timesteps=self.timestep_values,
            sigmas=[s for s in self.sigma_values if s is not None],
            initial_latent=HostCopy(self.latents),
        )

    @torch.inference_mode()
    def model_input(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """4a. What the UNet sees this step: the latent twice (both branches), t, the two texts."""
        t = self.timesteps[self.step_index]
        latent_pair = self.scheduler.scale_model_input(torch.cat([self.latents] * 2), t)
        return latent_pair, t, self.branch_embeddings if self._branched else self.embeddings

    @property
    def _branched(self) -> bool:
        """Whether this step reads the branch's texts and guidance (lesson 8) rather than the request's."""
        branch = self.spec.branch
        return branch is not None and self.step_index >= branch.at_step

    @torch.inference_mode()
    def finish_step(self, noise_pair: torch.Tensor, unet: Stopwatch, batch_size: int) -> StepEvent:
        """4b-4d. Guidance, the scheduler's step, and the model's guess of x0.

        On a GPU this queues the work and the copies to the host and returns: the
        event's copies are ready once `StepEvent.copied` returns.
        """
        scheduler = Stopwatch(self.model.device)
        t = self.timesteps[self.step_index]
        sample = self.latents

        # 4b. Classifier-free guidance, applied at every scale: g = 0 is the
        #     unconditional prediction, g = 1 the conditional one. (diffusers'
        #     pipeline skips this for g <= 1 and uses the conditional branch alone.)
        unconditional, conditional = noise_pair.chunk(2)
        _, _, scale = self.spec.reads_at(self.step_index)
        guided = unconditional + scale * (conditional - unconditional)

        # 4c. The scheduler turns the noise prediction into a step toward a cleaner latent.
        output = self.scheduler.step(guided, t, sample, **self.extra_step_kwargs, return_dict=True)
        self.latents = output.prev_sample

        # 4d. What the model currently believes the clean latent to be.
        x0 = predicted_x0(self.scheduler, output, sample, guided, self.timestep_values[self.step_index])

        # Every cheap probe leaves the device at every step, whatever this request asked for: the
        # trajectory serves every later reader and the cache (see probes.py for why).
        latent, x0_copy = HostCopy(self.latents), HostCopy(x0)
        noise = (HostCopy(unconditional), HostCopy(conditional), HostCopy(guided))
        attention = None
        if self.wants_attention:
            if self.attention is None:
                raise RuntimeError("cross-attention maps were asked for, but the UNet call recorded none")
            tokens = self.branch_attention_tokens if self._branched else self.attention_tokens
            attention = AttentionCopy.of(self.attention, tokens)
            self.attention = None
        self.denoising += [unet, scheduler.stop()]

        # 4e. When asked: the guess of x0 decoded into the picture it stands for.
        decoded, decoder, decode = None, "", None
        if self.wants_decoded_x0:
            decoder = self.model.preview_decoder.name
            decode = Stopwatch(self.model.device)
            picture = self.model.preview_decoder.decode(x0)
            decoded = HostCopy(picture[None], dtype=torch.uint8) if picture is not None else None
            self.denoising.append(decode.stop())

        event = StepEvent(
            step_index=self.step_index,
            total_steps=len(self.timesteps),
            timestep=self.timestep_values[self.step_index],
            sigma=self.sigma_values[self.step_index],
            latent=latent,
            predicted_x0=x0_copy,
            noise=noise,
            unet=unet,
            scheduler=scheduler,
            batch_size=batch_size,
            cross_attention=attention,
            decoded_x0=decoded,
            decoder=decoder,
            decode=decode,
        )
        self.step_index += 1
        return event

    def finish(self, queue_seconds: float, total_seconds: float) -> FinalEvent:
        """5-6. The image, decoded alone (see `finish_together`)."""
        return finish_together([self], [queue_seconds], [total_seconds])[0]

    def _final(self, image: np.ndarray, decode_s: float, queue_seconds: float, total_seconds: float) -> FinalEvent:
        # 6. The safety checker, when the model has one (a flagged image is blurred when encoded).
        started = time.perf_counter()
        flagged = self.model.check_safety(image)
        self.timings["vae_decode"] = decode_s + time.perf_counter() - started
        return FinalEvent(
            image=image,
            flagged=flagged,
            text_encoder_seconds=self.timings["text_encoder"],
            denoising_seconds=sum(work.seconds for work in self.denoising),
            vae_decode_seconds=self.timings["vae_decode"],
            total_seconds=total_seconds + self.timings["vae_decode"],
            queue_seconds=queue_seconds,
        )


def finish_together(
    generations: list[Generation], queue_seconds: list[float], total_seconds: list[float]
) -> list[FinalEvent]:
    """5. The VAE decoder turns the last latents of generations that end together into their images, in one call.

    A class that starts together ends together: one decoder call for its pictures
    keeps the GPU busier than one call each. Each image is the one its generation
    would get alone, within the rounding the batching tests allow (2 levels).
    """
    started = time.perf_counter()
    images = generations[0].model.decode(torch.cat([g.latents for g in generations]))
    decode_seconds = time.perf_counter() - started
    return [
        generation._final(image, decode_seconds, queued, total)
        for generation, image, queued, total in zip(generations, images, queue_seconds, total_seconds, strict=True)
    ]
