"""What a generation emits, step by step: plain host copies, encoded for the wire off the worker's thread.

`HostCopy` starts a tensor's copy to the host without waiting; `Stopwatch` times
device work without waiting for it. The trajectory log (`trajectories/`) stores
these events; `trajectories/frames.py` turns them into wire messages.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from services.inference.diffusion.attention import AttentionMaps
from services.inference.diffusion.models import PromptEmbedding, PromptTokens
from services.inference.diffusion.spec import GenerationSpec


@dataclass(frozen=True)
class EncodedPrompt:
    """A prompt's tokens, and its text vectors' lengths (and the vectors, when asked for) on their way to the host.

    Copied as the frames' tensors are (`HostCopy`): a generation's start reads nothing back
    from the device, so a student who joins a running class does not stop the worker until
    the UNet call in flight is done. Whoever encodes the header waits for the copies.
    """

    text: str
    tokens: PromptTokens
    embeddings: HostCopy | None  # float16 [max_length, hidden], when asked for
    token_norms: HostCopy  # float32 [max_length]

    @classmethod
    def from_embedding(cls, text: str, encoding: PromptEmbedding, with_embeddings: bool) -> EncodedPrompt:
        return cls(
            text=text,
            tokens=encoding.tokens,
            embeddings=HostCopy(encoding.embeddings) if with_embeddings else None,
            token_norms=HostCopy(encoding.embeddings.float().norm(dim=-1), torch.float32),
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
    event behind it); whoever encodes the frame waits for it, off the worker's thread.
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

    @classmethod
    def rows(cls, batch: torch.Tensor, dtype: torch.dtype = torch.float16) -> list[HostCopy]:
        """A copy of each sample of a batch, as `HostCopy(batch[i:i + 1])` makes it, converted and moved in one go."""
        ready: torch.cuda.Event | None = None
        if batch.device.type == "cuda":
            converted = batch.to(dtype)
            host = torch.empty(converted.shape, dtype=dtype, pin_memory=True)
            host.copy_(converted, non_blocking=True)
            ready = torch.cuda.Event()
            ready.record()
        else:
            host = batch.to(dtype, copy=True)
        copies = []
        for sample in host.unbind(0):
            copy = cls.__new__(cls)
            copy._host, copy._ready = sample, ready
            copies.append(copy)
        return copies

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
