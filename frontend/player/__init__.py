"""The trajectory player: a run's pictures sent to the browser once, then played there with no rerun.

A Streamlit component of our own (`web/`: plain HTML and JavaScript, nothing from
another host). It shows each step's pictures side by side with the step's t and
sigma, plays at a chosen speed, pauses, steps and scrubs, with the keyboard too
(space, left and right arrows). It sends the step back to Python only when the
lesson asks (`report=True`), once the student stops on a step.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit.components.v1 as components
from PIL import Image
from streamlit.delta_generator import DeltaGenerator

from frontend.trajectory import TrajectoryView

_COMPONENT = components.declare_component("trajectory_player", path=str(Path(__file__).parent / "web"))

NO_GUESS = "no guess yet: the first step makes it"


@dataclass(frozen=True)
class PlayerFrame:
    """One step as the player shows it: a picture per panel (None: nothing at this step)."""

    label: str  # e.g. "step 3 of 25"
    pictures: tuple[np.ndarray | None, ...]
    timestep: float | None = None
    sigma: float | None = None
    note: str = ""  # a sentence under the pictures, about this step
    missing: str = ""  # what an empty panel says


LOSSLESS_UP_TO = 128  # pixels a side: smaller pictures go as PNG (exact), larger as JPEG (a tenth of the bytes)
ENCODED_KEPT_BYTES = 48 * 2**20  # data URLs kept, newest first: a class on one lesson has each picture encoded once


class _Encoded:
    """The data URLs of recent pictures by their content, shared by every session of the process.

    A class opening the same lesson sends the same hundred-odd pictures to every
    student: encoding them once instead of once a student took the largest part of
    an opening's server CPU (docs/benchmarks.md, "A class of browsers").
    """

    def __init__(self, keep_bytes: int = ENCODED_KEPT_BYTES) -> None:
        self.keep_bytes = keep_bytes
        self._lock = threading.Lock()
        self._urls: OrderedDict[bytes, str] = OrderedDict()
        self._bytes = 0

    def get(self, picture: np.ndarray) -> str:
        contiguous = np.ascontiguousarray(picture)
        shape = repr((picture.shape, picture.dtype.str)).encode()
        key = hashlib.blake2b(contiguous.data, digest_size=16).digest() + shape
        with self._lock:
            url = self._urls.get(key)
            if url is not None:
                self._urls.move_to_end(key)
                return url
        url = _encode(contiguous)
        with self._lock:
            if key not in self._urls:
                self._urls[key] = url
                self._bytes += len(url)
            while self._bytes > self.keep_bytes:
                self._bytes -= len(self._urls.popitem(last=False)[1])
        return url


def data_url(picture: np.ndarray) -> str:
    """An RGB or grey picture as a data URL: PNG while small (a 64-pixel picture stays exact), else JPEG."""
    return _ENCODED.get(picture)


def _encode(picture: np.ndarray) -> str:
    buffer = io.BytesIO()
    if max(picture.shape[:2]) <= LOSSLESS_UP_TO:
        Image.fromarray(picture).save(buffer, format="PNG")
        return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    Image.fromarray(picture).save(buffer, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


_ENCODED = _Encoded()


def live_picture(slot: DeltaGenerator, picture: np.ndarray, caption: str) -> None:
    """A picture that is replaced many times a second (a stream's previews), drawn inline in the page.

    `st.image` would serve each version as a media file that the end of the script
    run deletes, and a browser still fetching the last one then gets a 404 (a console
    error, seen under load). Inline, the picture travels with the page's update.
    """
    text = html.escape(caption)
    slot.markdown(
        f'<figure style="margin:0"><img src="{data_url(picture)}" alt="{text}" style="max-width:100%">'
        f'<figcaption style="font-size:0.875rem;opacity:0.6">{text}</figcaption></figure>',
        unsafe_allow_html=True,
    )


def play(
    frames: Sequence[PlayerFrame],
    panels: Sequence[str],
    *,
    key: str,
    start: int = 0,
    report: bool = False,
    stills: Sequence[tuple[str, np.ndarray]] = (),
    width: int = 256,
    speed: float = 4,
) -> int:
    """Show the player; returns the step the student stopped on when `report`, else `start`.

    `panels` captions the pictures of every frame; `stills` are pictures that do not
    change with the step (the final image). `width` is each picture's width on screen.
    """
    start = max(0, min(start, len(frames) - 1))
    sent_frames = [
        {
            "label": frame.label,
            "t": frame.timestep,
            "sigma": frame.sigma,
            "note": frame.note,
            "missing": frame.missing,
            "pictures": [None if picture is None else data_url(picture) for picture in frame.pictures],
        }
        for frame in frames
    ]
    sent_stills = [{"caption": caption, "picture": data_url(picture)} for caption, picture in stills]
    digest = hashlib.sha256(repr((list(panels), sent_frames, sent_stills, start, width)).encode()).hexdigest()[:16]
    value = _COMPONENT(
        id=digest, panels=list(panels), frames=sent_frames, stills=sent_stills, start=start, report=report,
        width=width, speed=speed,
        key=f"{key}-{digest}",  # another trajectory is another player: it starts at `start`, sending nothing
        default=start,
    )  # fmt: skip
    if not report or not isinstance(value, int):
        return start
    return max(0, min(value, len(frames) - 1))


def trajectory_frames(run: TrajectoryView) -> list[PlayerFrame]:
    """Step 0 (the starting noise) and every step: the latent x_t, the guess x0 and, when sent, its decode."""
    decoded = any(step.decoded_x0 is not None for step in run.steps)
    total = len(run.steps)
    frames = [
        PlayerFrame(
            "the starting noise (step 0 of " + str(total) + ")",
            (run.initial_preview, None, None) if decoded else (run.initial_preview, None),
            missing=NO_GUESS,
        )
    ]
    for number, step in enumerate(run.steps, start=1):
        pictures = (step.latent_preview, step.x0_preview, step.decoded_x0) if decoded else (
            step.latent_preview, step.x0_preview)  # fmt: skip
        frames.append(PlayerFrame(f"step {number} of {total}", pictures, step.timestep, step.sigma))
    return frames


def trajectory_panels(run: TrajectoryView) -> list[str]:
    panels = ["the noisy latent x_t (preview)", "the model's guess of x0 (preview)"]
    if any(step.decoded_x0 is not None for step in run.steps):
        panels.append("the guess of x0, decoded")
    return panels


def play_trajectory(
    run: TrajectoryView,
    *,
    key: str,
    start: int | None = None,
    report: bool = False,
    stills: Sequence[tuple[str, np.ndarray]] = (),
    width: int = 256,
) -> int:
    """The player over a whole run, from its starting noise (step 0) to its last step (the default start)."""
    frames = trajectory_frames(run)
    return play(
        frames, trajectory_panels(run), key=key, start=len(frames) - 1 if start is None else start, report=report,
        stills=stills, width=width,
    )  # fmt: skip
