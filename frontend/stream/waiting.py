"""A page waiting on a stream: its one status, redrawn as it changes, with the model's guess so far beside it.

While it waits the page also asks, every few seconds, whether the teacher paused the
class (the stream itself does not say so).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import streamlit as st

from frontend.client import StudentError, get_client
from frontend.drawing.views import enlarge, inline_picture
from frontend.language import _
from frontend.settings import FrontendSettings
from frontend.stream.progress import YOUR_PICTURE, Phase, Snapshot, show
from frontend.stream.reader import StreamReader
from frontend.stream.wire import TrajectoryView, guess_picture

SHOW_AFTER_S = 0.15  # a wait shorter than this shows nothing: no status flickers past a quick cache read
PAUSE_CHECK_S = 2.0  # how often a waiting page asks whether the teacher paused the class
REDRAW_S = 0.5  # a status is drawn again this often, unchanged, so a click elsewhere is answered


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
    reader: StreamReader,
    slot: st.delta_generator.DeltaGenerator,
    *,
    planned: str = YOUR_PICTURE,
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
        state = reader.state.snapshot()
        now = time.monotonic()
        if not state.final and now >= pause_check:
            paused = class_paused()
            if paused is not None:
                reader.state.paused(paused)
                state = reader.state.snapshot()
            pause_check = now + PAUSE_CHECK_S
        if state.final or now - began >= show_after_s:
            view = (state.phase, state.steps_done, state.message, state.position, state.resumes, state.source,
                    round(state.seconds_left() or 0))  # fmt: skip
            # Drawn when it changes, and at least every REDRAW_S: drawing is where Streamlit stops this
            # script when the student clicks elsewhere (a long wait in the queue changes nothing for a while).
            if view != shown or now - drawn >= REDRAW_S:
                shown, drawn = view, now
                _draw(slot, state, reader.trajectory, planned, show_done, show_steps)
        if on_step is not None and state.steps_done != steps_seen:
            steps_seen = state.steps_done
            on_step(reader.trajectory)
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
    inline_picture(
        box.empty(), enlarge(guess, 160), _("the model's guess so far (step {step})").format(step=len(steps))
    )
