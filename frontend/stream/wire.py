"""A trajectory as the front end received it: each stream event decoded into arrays and pictures.

What the wire carries (`pb.GenerateResponse` events) becomes a `TrajectoryView` that
grows step by step; nothing here reads a stream or draws (`reader.py` reads, the
pages draw).
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields

import numpy as np

from frontend.client import StudentError
from services.common.api import pb
from services.common.codecs import decode_image, tensor_from_proto


def _array(tensor: pb.Tensor) -> np.ndarray | None:
    return tensor_from_proto(tensor).astype(np.float32) if tensor.shape else None


def _half(tensor: pb.Tensor) -> np.ndarray | None:
    return tensor_from_proto(tensor) if tensor.shape else None


UNREADABLE_PICTURE = "A picture in this lesson could not be read. Ask your teacher to render the lesson again."


# The decoders that draw a step's guess as a real picture (not the linear map): the model's VAE, or TAESD.
DECODERS = frozenset({"vae", "taesd"})


def _picture(image: pb.Image) -> np.ndarray | None:
    """A picture of the stream, or a sentence for the student (never a trace) when it does not decode."""
    if not image.data:
        return None
    try:
        return decode_image(image)
    except Exception as error:  # whatever the bytes are, the student gets a sentence
        raise StudentError(UNREADABLE_PICTURE) from error


@dataclass
class Step:
    index: int
    timestep: float
    sigma: float | None
    latent: np.ndarray | None  # [4, h, w] after this step
    predicted_x0: np.ndarray | None
    latent_preview: np.ndarray | None  # RGB, approximation
    x0_preview: np.ndarray | None
    decoded_x0: np.ndarray | None  # the guess decoded into a picture, when the request asked for it
    noise: tuple[np.ndarray, np.ndarray, np.ndarray] | None  # unconditional, conditional, guided
    seconds: float
    # Cross-attention maps [tokens, h, w] (start, prompt pieces, end), when the request asked for them.
    # Kept in float16 as sent: at 512 px they are the largest thing a step holds.
    attention: np.ndarray | None = None
    attention_by_resolution: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (layers, maps) each grid
    decoder: str = ""  # what drew decoded_x0: "vae", "taesd", or "linear" (the server had no decoder)
    decode_seconds: float = 0.0  # of `seconds`, the decode of the guess

    @classmethod
    def from_frame(cls, frame: pb.StepFrame) -> Step:
        noise = None
        if frame.HasField("noise"):
            noise = (_array(frame.noise.unconditional), _array(frame.noise.conditional), _array(frame.noise.guided))
        return cls(
            index=frame.step_index,
            timestep=frame.timestep,
            sigma=frame.sigma if frame.HasField("sigma") else None,
            latent=_array(frame.latent),
            predicted_x0=_array(frame.predicted_x0),
            latent_preview=_picture(frame.latent_preview),
            x0_preview=_picture(frame.predicted_x0_preview),
            decoded_x0=_picture(frame.decoded_x0_preview),
            noise=noise,
            seconds=frame.timings.step_seconds,
            attention=_half(frame.cross_attention.maps),
            attention_by_resolution=[(r.layers, _half(r.maps)) for r in frame.cross_attention.resolutions],
            decoder=frame.decoded_x0_preview.decoder,
            decode_seconds=frame.timings.decode_seconds,
        )


def guess_picture(step: Step) -> np.ndarray | None:
    """The best picture of a step's guess: its decode where the run has one, else the linear preview."""
    return step.decoded_x0 if step.decoded_x0 is not None and step.decoder in DECODERS else step.x0_preview


@dataclass
class TrajectoryView:
    """A trajectory as the front end received it: the header's facts and every step's pictures."""

    source: int = pb.TRAJECTORY_SOURCE_UNSPECIFIED
    key: str = ""  # the service's name for it (StreamStatus.trajectory_key): how it is shared to the gallery
    request: pb.GenerateRequest | None = None
    total_steps: int = 0
    timesteps: list[float] = field(default_factory=list)
    prompt_tokens: pb.TokenizeResponse | None = None
    initial_latent: np.ndarray | None = None
    initial_preview: np.ndarray | None = None
    steps: list[Step] = field(default_factory=list)
    image: np.ndarray | None = None
    flagged: bool = False  # the safety checker flagged the image: it came blurred
    total_seconds: float = 0.0
    queue: pb.QueueStatus | None = None  # the last queue position heard, before the header

    @property
    def cached(self) -> bool:
        return self.source == pb.TRAJECTORY_SOURCE_CACHE

    def add(self, response: pb.GenerateResponse) -> None:
        """Fold one stream event in (the Playground calls this as events arrive).

        A second status means the stream began again (the client reconnected): start afresh.
        """
        kind = response.WhichOneof("event")
        if kind == "status":
            if self.source != pb.TRAJECTORY_SOURCE_UNSPECIFIED:
                for spec in fields(self):
                    setattr(self, spec.name, spec.default_factory() if spec.default is MISSING else spec.default)
            self.source = response.status.source
            self.key = response.status.trajectory_key
        elif kind == "queue":
            self.queue = response.queue
        elif kind == "header":
            header = response.header
            self.request = header.request
            self.total_steps = header.total_steps
            self.timesteps = list(header.timesteps)
            self.prompt_tokens = header.prompt.tokens
            self.initial_latent = _array(header.initial_latent)
            self.initial_preview = _picture(header.initial_latent_preview)
        elif kind == "frame":
            self.steps.append(Step.from_frame(response.frame))
        elif kind == "final":
            self.image = _picture(response.final.image)
            self.flagged = response.final.safety_flagged
            self.total_seconds = response.final.timings.total_seconds

    def latents(self) -> list[np.ndarray]:
        """X at every step, starting from the noise: total_steps + 1 latents."""
        return [self.initial_latent, *(step.latent for step in self.steps)]
