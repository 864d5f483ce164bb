"""One guided generation, in the order the lessons tell it, numbered as diffusers' pipeline is.

Our own loop over the diffusers components rather than the pipeline's
`__call__`, so that every intermediate tensor can be shown and several
students' steps can share one UNet call (`batching.py`). For the same model,
seed and settings it computes what `StableDiffusionPipeline` computes, except
that guidance `u + g * (c - u)` is applied at every g (step 4b).

    1. Encode the prompt and the negative prompt          `Generation.start`
    2. A fresh scheduler, and the timesteps it visits      `Generation.start`
    3. The starting noise from the seed                    `Generation.start`
    4. Every step: a. the UNet on both branches            `predict_noise` (one call for a batch)
                   b. guidance  c. the scheduler's step    `guided_step` (for a batch at once:
                   d. the guess of x0  e. its decode        `batched_step.steps_together`, bit for bit)
    5. The VAE decodes the last latent                     `finish_together`
    6. The safety checker                                  `finish_together`

`denoise` is the loop itself (4, until done) for callers that run generations
outside the service: the Shapes evaluation, the benchmarks, the GPU suite. The
service's worker runs the same calls, step by step, in `batching.py`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor

from services.common.include_mask import Probe
from services.inference.diffusion.attention import AttentionMaps, eager
from services.inference.diffusion.batched_step import Rows, model_inputs, steps_together
from services.inference.diffusion.events import (
    AttentionCopy,
    EncodedPrompt,
    FinalEvent,
    HeaderEvent,
    HostCopy,
    StepEvent,
    Stopwatch,
)
from services.inference.diffusion.models import DiffusionModel
from services.inference.diffusion.schedulers import new_scheduler, predicted_x0, sigma_at, step_kwargs
from services.inference.diffusion.spec import GenerationSpec
from services.inference.diffusion.to_device import to_device

log = logging.getLogger(__name__)


class Generation:
    """One request's state: its own scheduler, generator, latents and embeddings.

    The UNet call is left to the caller (`model_input` in, `finish_step` out),
    so that the batching worker can run one UNet call for several generations.
    """

    def __init__(self, model: DiffusionModel, spec: GenerationSpec) -> None:
        self.model = model
        self.spec = spec
        self.step_index = 0
        self.timings = {"text_encoder": 0.0, "vae_decode": 0.0}
        self.denoising: list[Stopwatch] = []  # every step's device work, read when the generation ends
        # The costly probes, only when asked (see probes.py).
        self.wants_attention = Probe.CROSS_ATTENTION in spec.include
        self.wants_decoded_x0 = Probe.DECODED_X0_PREVIEW in spec.include
        self.attention: AttentionMaps | None = None  # this step's maps, left here by `predict_noise`
        self.rows: Rows | None = None  # this step's rows of its batch's joint step (batched_step.py), when it joined

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
        # Made on the host, where the schedulers read them: given the timestep on the GPU they would wait for it
        # at every step (DDIM's and PNDM's `alphas_cumprod[t]`). The scheduler's own copy is then put on the
        # device as the pipeline's `set_timesteps(device=...)` puts it (the only tensor that call leaves there),
        # without waiting for the work queued on it. The same numbers, copied, as the pipeline makes them on the
        # host too; the one exception, Euler's continuous v-prediction timesteps (`0.25 * log(sigma)`, computed
        # there on the device), is a configuration no model here uses.
        self.scheduler.set_timesteps(spec.steps, device="cpu")
        self.timesteps = self.scheduler.timesteps
        self.scheduler.timesteps = to_device(self.timesteps, model.device)

        # 3. The starting noise from the seed, scaled to the scheduler's initial noise level.
        self.generator = torch.Generator("cpu").manual_seed(spec.seed)
        factor = model.vae_downsample_factor
        shape = (1, model.latent_channels, spec.height // factor, spec.width // factor)
        noise = starting_noise(shape, self.generator, model.device, model.dtype)
        self.latents = noise * self.scheduler.init_noise_sigma
        self.extra_step_kwargs = step_kwargs(self.scheduler, self.generator)

        # Host copies of the schedule, as plain numbers.
        self.timestep_values = [float(t) for t in self.timesteps.tolist()]
        if hasattr(self.scheduler, "set_begin_index"):
            # Where the first step is, read here from the host copy as diffusers' `index_for_timestep` finds it
            # (the second of two equal first timesteps): left to the scheduler, its first step searches the
            # schedule on the device and waits for it, and a class's worker with it.
            first = self.timestep_values[0]
            self.scheduler.set_begin_index(1 if self.timestep_values.count(first) > 1 else 0)
        self.sigma_values = [sigma_at(self.scheduler, i) for i in range(len(self.timesteps))]
        with_embeddings = Probe.EMBEDDINGS in spec.include
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
        return latent_pair, t, self.branch_embeddings if self.branched else self.embeddings

    @property
    def branched(self) -> bool:
        """Whether this step reads the branch's texts and guidance (lesson 8) rather than the request's."""
        return self.spec.branched_at(self.step_index)

    def finish_step(self, noise_pair: torch.Tensor, unet: Stopwatch, batch_size: int) -> StepEvent:
        """4b-4e, once the UNet has run (`predict_noise`): see `guided_step`.

        When its batch's step was done together (`batched_step.steps_together`), this step's
        rows are waiting and are taken as they are; otherwise it steps alone.
        """
        rows, self.rows = self.rows, None
        if rows is not None and rows.step_index == self.step_index:
            return rows.take(self, unet, batch_size)
        return guided_step(self, noise_pair, unet, batch_size)

    def finish(self, queue_seconds: float, total_seconds: float) -> FinalEvent:
        """5-6. The image, decoded alone (see `finish_together`)."""
        return finish_together([self], [queue_seconds], [total_seconds])[0]


def predict_noise(
    model: DiffusionModel, generations: list[Generation], inputs_made: Callable[[], None] | None = None
) -> tuple[list[torch.Tensor], Stopwatch]:
    """4a. The UNet on both branches of every generation in a batch, in one call: each generation's pair of rows."""
    noise, stopwatch = predict_noise_together(model, generations, inputs_made)
    return list(noise.split(2)), stopwatch


def predict_noise_together(
    model: DiffusionModel, generations: list[Generation], inputs_made: Callable[[], None] | None = None
) -> tuple[torch.Tensor, Stopwatch]:
    """4a. The UNet on both branches of every generation in a batch, in one call.

    Each generation brings its latent twice (unconditional, conditional), its own
    timestep and its two texts; they are stacked (`batched_step.model_inputs`), run through
    the UNet once, and the whole output comes back, two rows for each generation in
    batch order, with the call's stopwatch (on a GPU the call is only queued when this
    returns). Generations that asked for cross-attention maps get those of their
    conditional branch (`Generation.attention`), recorded beside the same call.
    """
    latents, timesteps, embeddings = model_inputs(generations)
    if inputs_made is not None:  # (the batching worker sends the last step's frames here: see `BatchScheduler._step`)
        inputs_made()
    # The conditional branch is the last row of each generation's pair.
    watched = [(2 * i + 1, g) for i, g in enumerate(generations) if g.wants_attention]
    stopwatch = Stopwatch(model.device)
    if not watched:
        noise = model.unet(latents, timesteps, encoder_hidden_states=embeddings, return_dict=False)
    else:
        # The maps are recorded beside this very call (see attention.py), by the UNet as
        # Python runs it: a compiled UNet's graphs would not run the probe.
        rows = [row for row, _ in watched]
        with model.cross_attention.recording(rows, tuple(latents.shape[-2:]), latents.device) as recording:
            noise = eager(model.unet)(latents, timesteps, encoder_hidden_states=embeddings, return_dict=False)
            for (_, generation), maps in zip(watched, recording.results(), strict=True):
                generation.attention = maps
    return noise[0], stopwatch.stop()


@torch.inference_mode()
def guided_step(generation: Generation, noise_pair: torch.Tensor, unet: Stopwatch, batch_size: int) -> StepEvent:
    """4b-4e. Guidance, the scheduler's step, the model's guess of x0 and, when asked, its picture.

    On a GPU this queues the work and the copies to the host and returns: the
    event's copies are ready once `StepEvent.copied` returns.
    """
    scheduler = Stopwatch(generation.model.device)
    t = generation.timesteps[generation.step_index]
    sample = generation.latents

    # 4b. Classifier-free guidance, applied at every scale: g = 0 is the
    #     unconditional prediction, g = 1 the conditional one. (diffusers'
    #     pipeline skips this for g <= 1 and uses the conditional branch alone.)
    unconditional, conditional = noise_pair.chunk(2)
    _, _, scale = generation.spec.reads_at(generation.step_index)
    guided = unconditional + scale * (conditional - unconditional)

    # 4c. The scheduler turns the noise prediction into a step toward a cleaner latent.
    output = generation.scheduler.step(guided, t, sample, **generation.extra_step_kwargs, return_dict=True)
    generation.latents = output.prev_sample

    # 4d. What the model currently believes the clean latent to be.
    x0 = predicted_x0(generation.scheduler, output, sample, guided, generation.timestep_values[generation.step_index])

    # Every cheap probe leaves the device at every step, whatever this request asked for: the
    # trajectory serves every later reader and the cache (see probes.py for why).
    latent, x0_copy = HostCopy(generation.latents), HostCopy(x0)
    noise = (HostCopy(unconditional), HostCopy(conditional), HostCopy(guided))
    attention = None
    if generation.wants_attention:
        if generation.attention is None:
            raise RuntimeError("cross-attention maps were asked for, but the UNet call recorded none")
        tokens = generation.branch_attention_tokens if generation.branched else generation.attention_tokens
        attention = AttentionCopy.of(generation.attention, tokens)
        generation.attention = None
    generation.denoising += [unet, scheduler.stop()]

    # 4e. When asked: the guess of x0 decoded into the picture it stands for.
    decoded, decoder, decode = None, "", None
    if generation.wants_decoded_x0:
        decoder = generation.model.preview_decoder.name
        decode = Stopwatch(generation.model.device)
        picture = generation.model.preview_decoder.decode(x0)
        decoded = HostCopy(picture[None], dtype=torch.uint8) if picture is not None else None
        generation.denoising.append(decode.stop())

    event = StepEvent(
        step_index=generation.step_index,
        total_steps=len(generation.timesteps),
        timestep=generation.timestep_values[generation.step_index],
        sigma=generation.sigma_values[generation.step_index],
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
    generation.step_index += 1
    return event


def finish_together(
    generations: list[Generation], queue_seconds: list[float], total_seconds: list[float]
) -> list[FinalEvent]:
    """5-6. The VAE decoder turns the last latents of generations that end together into their images, in one call.

    A class that starts together ends together: one decoder call for its pictures
    keeps the GPU busier than one call each. Each image is the one its generation
    would get alone, within the rounding the batching tests allow (2 levels).
    """
    # 5. The VAE decoder: latents to pixels.
    started = time.perf_counter()
    images = generations[0].model.decode(torch.cat([g.latents for g in generations]))
    decode_seconds = time.perf_counter() - started
    return [
        _checked(generation, image, decode_seconds, queued, total)
        for generation, image, queued, total in zip(generations, images, queue_seconds, total_seconds, strict=True)
    ]


def _checked(
    generation: Generation, image: np.ndarray, decode_s: float, queue_seconds: float, total_seconds: float
) -> FinalEvent:
    # 6. The safety checker, when the model has one (a flagged image is blurred when encoded).
    started = time.perf_counter()
    flagged = generation.model.check_safety(image)
    generation.timings["vae_decode"] = decode_s + time.perf_counter() - started
    return FinalEvent(
        image=image,
        flagged=flagged,
        text_encoder_seconds=generation.timings["text_encoder"],
        denoising_seconds=sum(work.seconds for work in generation.denoising),
        vae_decode_seconds=generation.timings["vae_decode"],
        total_seconds=total_seconds + generation.timings["vae_decode"],
        queue_seconds=queue_seconds,
    )


def denoise(model: DiffusionModel, generations: list[Generation]) -> Iterator[list[StepEvent]]:
    """4, the loop: started generations of one length, a guided step at a time through one UNet call, until done.

    Yields each step's events (their copies may still be on the way: `StepEvent.copied`);
    `finish_together` (or `Generation.finish`) then makes the pictures.
    """
    while not generations[0].done:
        with torch.inference_mode():
            noise, unet = predict_noise_together(model, generations)
            steps_together(generations, noise)
            pairs = noise.split(2)
            events = [
                generation.finish_step(pair, unet, batch_size=2 * len(generations))
                for generation, pair in zip(generations, pairs, strict=True)
            ]
        yield events  # outside inference mode: the caller's code runs as it would without us


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
    return to_device(noise.to(dtype), device)  # (either side rounds to the nearest float16 alike)
