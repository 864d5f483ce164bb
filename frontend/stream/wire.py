"""A generation as the lessons use it: decoded arrays and pictures, step by step, read as it comes.

Every stream is read by a thread of its own (a `Generation`) while the page shows
where it stands, so a wait is never silent and leaving a page does not throw the
work away. Lesson trajectories are kept for every session of this process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields

import grpc
import numpy as np
import streamlit as st

from frontend.client import RECONNECT_DELAYS_S, StudentError, browser_address, get_client, student_id
from frontend.progress import Phase, Snapshot, StreamState, show
from frontend.settings import FrontendSettings
from frontend.views import enlarge, inline_picture
from services.common.api import pb
from services.common.codecs import decode_image, tensor_from_proto
from services.common.trajectories import ON_REQUEST_PROBES

log = logging.getLogger(__name__)

# What the lesson pages ask for: everything but the text embeddings.
LESSON_PROBES = ["latent", "predicted_x0", "latent_preview", "predicted_x0_preview", "noise_predictions"]


def _array(tensor: pb.Tensor) -> np.ndarray | None:
    return tensor_from_proto(tensor).astype(np.float32) if tensor.shape else None


def _half(tensor: pb.Tensor) -> np.ndarray | None:
    return tensor_from_proto(tensor) if tensor.shape else None


# Trajectories may carry each step's decoded guess (probe `decoded_x0_preview`).
_HAS_DECODED = "decoded_x0_preview" in pb.StepFrame.DESCRIPTOR.fields_by_name

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
            decoded_x0=_picture(frame.decoded_x0_preview) if _HAS_DECODED else None,
            noise=noise,
            seconds=frame.timings.step_seconds,
            attention=_half(frame.cross_attention.maps),
            attention_by_resolution=[(r.layers, _half(r.maps)) for r in frame.cross_attention.resolutions],
            decoder=frame.decoded_x0_preview.decoder if _HAS_DECODED else "",
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


def _name() -> str:
    return st.session_state.get("display_name", "")


SHOW_AFTER_S = 0.15  # a wait shorter than this shows nothing: no status flickers past a quick cache read
PAUSE_CHECK_S = 2.0  # how often a waiting page asks whether the teacher paused the class
REDRAW_S = 0.5  # a status is drawn again this often, unchanged, so a click elsewhere is answered
FAILED_SENTENCE = "Something went wrong while reading this picture. Try again; if it keeps happening, tell the teacher."


class Generation:
    """One Generate stream, read to its end by a thread of its own while pages show where it stands.

    Made in a page's script (it asks Streamlit who the student is); afterwards only its
    thread changes it. `trajectory` grows as events arrive; `state` says where it stands.
    """

    def __init__(
        self,
        request: pb.GenerateRequest,
        *,
        lesson_entry: str = "",
        expected_step_s: float | None = None,
        on_end: Callable[[Generation], None] | None = None,
    ) -> None:
        self.request = request
        self.trajectory = TrajectoryView()
        self.state = StreamState(total_steps=request.num_inference_steps, expected_step_s=expected_step_s)
        self._client = get_client()
        self._who = {"student": student_id(), "name": _name(), "address": browser_address()}
        self._lesson_entry = lesson_entry
        self._on_end = on_end
        self._lock = threading.Lock()
        self._call: grpc.Call | None = None
        self._thread = threading.Thread(target=self._read, name="classroom-stream", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            events = self._client.generate(
                self.request, self._who["student"], name=self._who["name"], address=self._who["address"],
                lesson_entry=self._lesson_entry, on_reconnect=self._reconnecting, on_call=self._sent,
            )  # fmt: skip
            for response in events:
                self.trajectory.add(response)  # before the state: a page told "step k" finds step k
                self.state.event(response)
            self.state.ended()
        except StudentError as error:
            self.state.failed(str(error), error.code)
        except Exception:  # the student gets a sentence; the log gets the trace
            log.exception("reading a generation failed")
            self.state.failed(FAILED_SENTENCE)
        finally:
            if self._on_end is not None:
                self._on_end(self)

    def _reconnecting(self, attempt: int, pause: float) -> None:
        self.state.reconnecting(attempt, pause, len(RECONNECT_DELAYS_S))

    def _sent(self, call: grpc.Call) -> None:
        with self._lock:
            self._call = call
        if self.state.stop_asked:
            call.cancel()

    def stop(self) -> None:
        """Stop it now: the status says so at once, and the service drops the work it no longer needs."""
        self.state.stop()
        with self._lock:
            call = self._call
        if call is not None:
            call.cancel()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the thread to finish reading (tests; pages follow with `follow`)."""
        self._thread.join(timeout)
        return not self._thread.is_alive()


class Pace:
    """Seconds per step this server has taken lately, per picture size, to say how long a wait will be."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._per_pixel: dict[int, float] = {}  # pixels -> seconds per step, smoothed

    def learn(self, request: pb.GenerateRequest, seconds_per_step: float) -> None:
        pixels = request.width * request.height
        if pixels <= 0 or seconds_per_step <= 0:
            return
        with self._lock:
            known = self._per_pixel.get(pixels)
            self._per_pixel[pixels] = seconds_per_step if known is None else 0.7 * known + 0.3 * seconds_per_step

    def expect(self, request: pb.GenerateRequest) -> float | None:
        """The expected seconds per step (scaled from the nearest size seen), or None before any run."""
        pixels = request.width * request.height
        with self._lock:
            if not self._per_pixel or pixels <= 0:
                return None
            nearest = min(self._per_pixel, key=lambda known: abs(known - pixels))
            return self._per_pixel[nearest] * pixels / nearest


class LessonStore:
    """Finished trajectories for every session of this process (the newest `keep`), and the ones being read.

    Two students opening the same uncomputed example follow one stream; a student who
    leaves the page leaves it running, so it is ready when someone comes back.
    """

    def __init__(self, keep: int = 128) -> None:
        self.keep = keep
        self.pace = Pace()
        self._lock = threading.Lock()
        self._done: OrderedDict[bytes, TrajectoryView] = OrderedDict()
        self._running: dict[bytes, Generation] = {}

    def finished(self, key: bytes) -> TrajectoryView | None:
        with self._lock:
            trajectory = self._done.get(key)
            if trajectory is not None:
                self._done.move_to_end(key)
            return trajectory

    def generation(self, key: bytes, start: Callable[[Callable[[Generation], None]], Generation]) -> Generation:
        """The stream reading `key`, started with `start(on_end)` unless one already is."""
        with self._lock:
            running = self._running.get(key)
            if running is None:
                running = self._running[key] = start(lambda generation: self._settle(key, generation))
            return running

    def _settle(self, key: bytes, generation: Generation) -> None:
        state = generation.state.snapshot()
        trajectory = generation.trajectory
        with self._lock:
            if self._running.get(key) is generation:
                del self._running[key]  # a failed one is tried again by the next page that asks
            if state.phase == Phase.DONE and trajectory.image is not None:
                self._done[key] = trajectory
                while len(self._done) > self.keep:
                    self._done.popitem(last=False)
        if state.phase == Phase.DONE and trajectory.steps and generation.request.width:
            if trajectory.source == pb.TRAJECTORY_SOURCE_COMPUTED and state.seconds_per_step:
                self.pace.learn(generation.request, state.seconds_per_step)
            elif self.pace.expect(generation.request) is None:  # the service's own step times, as a first guess
                self.pace.learn(generation.request, sum(s.seconds for s in trajectory.steps) / len(trajectory.steps))

    def clear(self) -> None:
        with self._lock:
            self._done.clear()
            self._running.clear()


@st.cache_resource
def lesson_store() -> LessonStore:
    """The one store of this front-end process."""
    return LessonStore()


@st.cache_data(ttl=PAUSE_CHECK_S, show_spinner=False)
def class_paused() -> bool | None:
    """Whether the teacher has paused generation (None: this front end cannot tell).

    The stream itself does not say so; the front end asks with the teacher code it
    holds for the teacher's page, once every few seconds for all its sessions.
    """
    code = FrontendSettings().teacher_code
    if not code:
        return None
    try:
        return get_client().classroom(code).paused
    except StudentError:
        return None


def follow(
    generation: Generation,
    slot: st.delta_generator.DeltaGenerator,
    *,
    planned: str = "your picture",
    show_done: bool = False,
    show_steps: bool = False,
    on_step: Callable[[TrajectoryView], None] | None = None,
    show_after_s: float = SHOW_AFTER_S,
) -> Snapshot:
    """Show the stream's one status in `slot` until it ends (after `show_after_s`: quick reads show nothing).

    `show_steps` draws the model's latest guess beside the status; `on_step` is called
    whenever a new step has arrived. Returns where the stream ended.
    """
    began = time.monotonic()
    pause_check = began + 1.0
    shown: tuple[object, ...] | None = None
    drawn = began
    steps_seen = 0
    while True:
        state = generation.state.snapshot()
        now = time.monotonic()
        if not state.final and now >= pause_check:
            paused = class_paused()
            if paused is not None:
                generation.state.paused(paused)
                state = generation.state.snapshot()
            pause_check = now + PAUSE_CHECK_S
        if state.final or now - began >= show_after_s:
            view = (state.phase, state.steps_done, state.message, state.position, state.resumes, state.source,
                    round(state.seconds_left() or 0))  # fmt: skip
            # Drawn when it changes, and at least every REDRAW_S: drawing is where Streamlit stops this
            # script when the student clicks elsewhere (a long wait in the queue changes nothing for a while).
            if view != shown or now - drawn >= REDRAW_S:
                shown, drawn = view, now
                _draw(slot, state, generation.trajectory, planned, show_done, show_steps)
        if on_step is not None and state.steps_done != steps_seen:
            steps_seen = state.steps_done
            on_step(generation.trajectory)
        if state.final:
            return state
        time.sleep(0.1)


def _draw(
    slot: st.delta_generator.DeltaGenerator,
    state: Snapshot,
    trajectory: TrajectoryView,
    planned: str,
    show_done: bool,
    show_steps: bool,
) -> None:
    if state.phase == Phase.DONE and not show_done:
        slot.empty()
        return
    steps = trajectory.steps
    guess = guess_picture(steps[-1]) if steps else None
    if not (show_steps and state.phase == Phase.RUNNING and guess is not None):
        show(slot, state, planned=planned)
        return
    box = slot.container()
    show(box, state, planned=planned)
    # Inline: redrawn twice a second, an st.image's media file would be deleted while the browser fetches it.
    inline_picture(box.empty(), enlarge(guess, 160), f"the model's guess so far (step {len(steps)})")


@st.cache_data(ttl=60, show_spinner=False)
def _server_on_request_defaults(address: str) -> list[str]:
    return sorted(ON_REQUEST_PROBES.intersection(get_client().model_info().default_include_paths))


def server_defaults() -> frozenset[str]:
    """The probes computed on request that the server gives by default (on Shapes: each step's guess decoded).

    The service decides (`probes.default_probes`); its lesson examples carry the same, so a
    lesson opened with them finds its precomputed trajectory.
    """
    try:
        client = get_client()
        return frozenset(_server_on_request_defaults(client.settings.inference_addr))  # per server
    except StudentError:  # the service cannot answer now: the request goes without, and says so in its pictures
        return frozenset()


def request_with(request: pb.GenerateRequest, probes: list[str] | None = None) -> pb.GenerateRequest:
    """The request as the lessons send it: the probes they draw, those computed on request it names, the server's.

    A catalog entry's request names the costly probes (cross-attention maps, decoded guesses)
    its lesson was rendered with: they are part of its identity, so they are kept. The server's
    defaults among them are added to every request (the catalog's entries carry them too).
    """
    message = pb.GenerateRequest()
    message.CopyFrom(request)
    del message.include.paths[:]
    wanted = probes or LESSON_PROBES
    on_request = (ON_REQUEST_PROBES.intersection(request.include.paths) | server_defaults()) - set(wanted)
    message.include.paths.extend(wanted + sorted(on_request))
    return message


def ready(request: pb.GenerateRequest, probes: list[str] | None = None) -> bool:
    """Whether this process already holds the trajectory (opening it needs no model work)."""
    return lesson_store().finished(request_with(request, probes).SerializeToString(deterministic=True)) is not None


def expected_seconds(request: pb.GenerateRequest) -> float | None:
    """How long computing it would take on this server now, from the steps it has timed lately."""
    pace = lesson_store().pace.expect(request)
    return None if pace is None else pace * request.num_inference_steps


def load(
    request: pb.GenerateRequest,
    probes: list[str] | None = None,
    lesson_entry: str = "",
    *,
    planned: str = "this example",
    cold: bool = False,
) -> TrajectoryView:
    """A whole trajectory (from the cache when it was precomputed), kept for every session.

    While it takes more than a moment, the page shows what is happening where this is
    called, with the steps as they come (at once when it is known to be `cold`: not
    cached anywhere). `lesson_entry` names the catalog entry being opened: computed, it
    is kept as the lesson's. Raises StudentError when it cannot be had.
    """
    message = request_with(request, probes)
    key = message.SerializeToString(deterministic=True)
    store = lesson_store()
    finished = store.finished(key)
    if finished is not None:
        return finished

    def start(on_end: Callable[[Generation], None]) -> Generation:
        return Generation(message, lesson_entry=lesson_entry, expected_step_s=store.pace.expect(message),
                          on_end=on_end)  # fmt: skip

    generation = store.generation(key, start)
    slot = st.empty()
    state = follow(generation, slot, planned=planned, show_steps=True, show_after_s=0.0 if cold else SHOW_AFTER_S)
    slot.empty()
    if state.phase != Phase.DONE or generation.trajectory.image is None:
        raise StudentError(state.message or FAILED_SENTENCE)
    return generation.trajectory
