"""A generation as the lessons use it: decoded arrays and pictures, step by step."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import MISSING, dataclass, field, fields

import numpy as np
import streamlit as st

from frontend.client import StudentError, browser_address, get_client, student_id
from services.common.api import pb
from services.common.codecs import decode_image, tensor_from_proto

# What the lesson pages ask for: everything but the text embeddings.
LESSON_PROBES = ["latent", "predicted_x0", "latent_preview", "predicted_x0_preview", "noise_predictions"]


def _array(tensor: pb.Tensor) -> np.ndarray | None:
    return tensor_from_proto(tensor).astype(np.float32) if tensor.shape else None


UNREADABLE_PICTURE = "A picture in this lesson could not be read. Ask your teacher to render the lesson again."


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
    noise: tuple[np.ndarray, np.ndarray, np.ndarray] | None  # unconditional, conditional, guided
    seconds: float

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
            noise=noise,
            seconds=frame.timings.step_seconds,
        )


@dataclass
class TrajectoryView:
    """A trajectory as the front end received it: the header's facts and every step's pictures."""

    source: int = pb.TRAJECTORY_SOURCE_UNSPECIFIED
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


def _name() -> str:
    return st.session_state.get("display_name", "")


def _address() -> str:
    """The browser's address, so one machine cannot hold many places in the queue under many names."""
    return browser_address()


def stream(
    request: pb.GenerateRequest, on_reconnect: Callable[[int, float], None] | None = None
) -> Iterator[tuple[TrajectoryView, pb.GenerateResponse]]:
    """Follow a generation live: the trajectory so far after each event."""
    trajectory = TrajectoryView()
    for response in get_client().generate(
        request, student_id(), name=_name(), address=_address(), on_reconnect=on_reconnect
    ):
        trajectory.add(response)
        yield trajectory, response


@st.cache_data(max_entries=128, show_spinner=False)
def _load(request_bytes: bytes, lesson_entry: str, _student: str, _name: str, _address: str) -> TrajectoryView:
    # Shared by every session (the underscored student id, name and address are not part of the cache key).
    trajectory = TrajectoryView()
    request = pb.GenerateRequest.FromString(request_bytes)
    for response in get_client().generate(request, _student, name=_name, lesson_entry=lesson_entry, address=_address):
        trajectory.add(response)
    return trajectory


def load(request: pb.GenerateRequest, probes: list[str] | None = None, lesson_entry: str = "") -> TrajectoryView:
    """A whole trajectory (from the cache when it was precomputed), kept for every session.

    `lesson_entry` names the catalog entry being opened: computed, it is kept as the lesson's.
    """
    message = pb.GenerateRequest()
    message.CopyFrom(request)
    del message.include.paths[:]
    message.include.paths.extend(probes or LESSON_PROBES)
    return _load(message.SerializeToString(deterministic=True), lesson_entry, student_id(), _name(), _address())
