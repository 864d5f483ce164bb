"""Reading streams and running diffusers' pipeline the way the tests compare them."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from services.common.api import pb, unbatch
from services.common.codecs import decode_image, tensor_from_proto
from services.inference.diffusion.denoise import starting_noise
from services.inference.diffusion.models import device_and_dtype
from services.inference.diffusion.schedulers import make_scheduler

# Where the service puts the model, and so the reference pipeline too: float32 on a CPU, float16 on a GPU.
ON_GPU = device_and_dtype("auto")[0].type == "cuda"


ALL_PROBES = ["latent", "predicted_x0", "latent_preview", "predicted_x0_preview", "noise_predictions", "embeddings"]


@dataclass
class Stream:
    status: pb.StreamStatus
    header: pb.TrajectoryHeader
    frames: list[pb.StepFrame] = field(default_factory=list)
    final: pb.FinalImage | None = None
    queue: list[pb.QueueStatus] = field(default_factory=list)  # positions heard before the header

    @property
    def image(self) -> np.ndarray:
        assert self.final is not None
        return decode_image(self.final.image)

    def latents(self) -> list[np.ndarray]:
        return [tensor_from_proto(frame.latent) for frame in self.frames]


def request(prompt: str = "a watercolor fox", include: list[str] | None = None, **fields) -> pb.GenerateRequest:
    message = pb.GenerateRequest(prompt=prompt, **fields)
    message.include.paths.extend(include or [])
    return message


def collect(responses) -> Stream:
    """Read a whole Generate stream, checking the order: status, queue positions, header, frames, final."""
    stream: Stream | None = None
    status: pb.StreamStatus | None = None
    queue: list[pb.QueueStatus] = []
    for response in unbatch(responses):
        kind = response.WhichOneof("event")
        if kind == "status":
            assert status is None and stream is None, "status must come first, once"
            status = response.status
        elif kind == "queue":
            assert status is not None and stream is None, "queue positions come between status and header"
            if not queue or queue[-1] != response.queue:  # each change once (reminders repeat an unchanged place)
                queue.append(response.queue)
        elif kind == "header":
            assert status is not None and stream is None, "header must follow the status, once"
            stream = Stream(status=status, header=response.header, queue=queue)
        else:
            assert stream is not None and stream.final is None, f"{kind} outside header..final"
            if kind == "frame":
                stream.frames.append(response.frame)
            else:
                stream.final = response.final
    assert stream is not None and stream.final is not None
    return stream


def run_pipeline(pipe, scheduler_config: dict, spec: pb.GenerateRequest, *, prompt: str | None = None):
    """Diffusers' StableDiffusionPipeline on the same settings: (image uint8, per-step latents as float32).

    The starting noise comes from the service's own `starting_noise`, with the same
    generator, which the pipeline then goes on using (ancestral schedulers draw from it).
    """
    pipe.scheduler = make_scheduler(spec.scheduler, scheduler_config)
    latents: list[torch.Tensor] = []

    def keep(_pipe, _i, _t, tensors):
        latents.append(tensors["latents"].detach().to("cpu", torch.float32).clone())
        return tensors

    generator = torch.Generator("cpu").manual_seed(spec.seed)
    factor = pipe.vae_scale_factor
    shape = (1, pipe.unet.config.in_channels, spec.height // factor, spec.width // factor)
    result = pipe(
        prompt=spec.prompt if prompt is None else prompt,
        negative_prompt=spec.negative_prompt or None,
        num_inference_steps=spec.num_inference_steps,
        guidance_scale=spec.guidance_scale,
        width=spec.width,
        height=spec.height,
        generator=generator,
        latents=starting_noise(shape, generator, pipe.device, pipe.dtype),
        callback_on_step_end=keep,
        output_type="pil",
    )
    return np.asarray(result.images[0]), latents
