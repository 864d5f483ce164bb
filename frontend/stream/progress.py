"""Where one stream stands, as one state machine, and the one status line a page shows for it.

waiting -> running -> done, with stopped, failed, cleared and paused on the way:
every status a student reads comes from the current state, in one slot per
stream whose content is replaced at each change, so two statuses never
contradict each other (a cleared picture is not also "2 ahead of yours").
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from enum import StrEnum

import grpc
import streamlit as st

from frontend.drawing.views import said
from frontend.language import N_, _, ngettext, number
from services.common.api import pb


class Phase(StrEnum):
    WAITING = "waiting"  # sent, not started: connecting, in the queue, reconnecting
    RUNNING = "running"  # steps arriving (computed, followed or read from the cache)
    PAUSED = "paused"  # the teacher paused generation: it goes on when they resume
    DONE = "done"
    STOPPED = "stopped"  # the student stopped it
    FAILED = "failed"
    CLEARED = "cleared"  # the teacher cleared the queue while it waited


FINAL = frozenset({Phase.DONE, Phase.STOPPED, Phase.FAILED, Phase.CLEARED})
# Which state may follow which; anything else (a queue event after a clear, say) is ignored.
NEXT: dict[Phase, frozenset[Phase]] = {
    Phase.WAITING: frozenset({Phase.RUNNING, Phase.PAUSED, *FINAL}),
    Phase.RUNNING: frozenset({Phase.WAITING, Phase.PAUSED, *FINAL}),  # waiting again: a reconnect
    Phase.PAUSED: frozenset({Phase.WAITING, Phase.RUNNING, *FINAL}),
    **{phase: frozenset() for phase in FINAL},
}

CLEARED_SENTENCE = N_("Your teacher cleared the queue, so this picture was not made. You can ask for it again.")
YOUR_PICTURE = N_("your picture")


@dataclass(frozen=True)
class Snapshot:
    """One moment of a stream, as the status line shows it."""

    phase: Phase = Phase.WAITING
    source: int = pb.TRAJECTORY_SOURCE_UNSPECIFIED
    position: int = 0  # in the queue, 1 next; 0 unknown or started
    steps_done: int = 0
    total_steps: int = 0
    seconds_per_step: float | None = None  # measured on this stream, else the expected pace
    message: str = ""  # the sentence of a failure, a clear or a reconnect
    message_args: tuple[tuple[str, object], ...] = ()  # the reconnect's numbers: `message` is then a msgid
    seconds: float = 0.0  # since the stream was sent
    resumes: Phase = Phase.WAITING  # where a pause goes back to

    @property
    def final(self) -> bool:
        return self.phase in FINAL

    def seconds_left(self) -> float | None:
        if self.seconds_per_step is None or not self.total_steps:
            return None
        return self.seconds_per_step * (self.total_steps - self.steps_done)


class StreamState:
    """The state machine of one stream: fed by the thread that reads it and by the page (stop, pause).

    Thread-safe: the reading thread changes it while the page reads snapshots.
    """

    def __init__(self, total_steps: int = 0, expected_step_s: float | None = None) -> None:
        self._lock = threading.Lock()
        self._state = Snapshot(total_steps=total_steps, seconds_per_step=expected_step_s)
        self._sent = time.monotonic()
        self._ended: float | None = None  # when it reached a final state: its time stops there
        self._first_frame: tuple[int, float] | None = None  # (steps done, when) at the first frame seen
        self._stop_asked = False

    def snapshot(self) -> Snapshot:
        with self._lock:
            return replace(self._state, seconds=(self._ended or time.monotonic()) - self._sent)

    @property
    def stop_asked(self) -> bool:
        return self._stop_asked

    def _go(self, phase: Phase, **changes: object) -> bool:
        """Move to `phase` (with `changes`) if the machine allows it; the lock is held."""
        state = self._state
        if phase != state.phase and phase not in NEXT[state.phase]:
            return False
        if phase in FINAL:
            self._ended = time.monotonic()
        if state.phase == Phase.PAUSED and phase in (Phase.WAITING, Phase.RUNNING):
            # While paused, the stream's own news updates where it resumes, not what is shown.
            self._state = replace(state, resumes=phase, **changes)
            return True
        self._state = replace(state, phase=phase, **changes)
        return True

    def event(self, response: pb.GenerateResponse) -> None:
        """One event of the stream (batches already unpacked by the client)."""
        kind = response.WhichOneof("event")
        with self._lock:
            if self._state.final:
                return
            if kind == "status":
                # The first event, or the first after a reconnect: the stream starts over.
                self._first_frame = None
                self._go(
                    Phase.WAITING, source=response.status.source, steps_done=0, position=0, message="", message_args=()
                )
            elif kind == "queue":
                self._go(Phase.WAITING, position=response.queue.position)
            elif kind == "header":
                self._go(
                    Phase.RUNNING, total_steps=response.header.total_steps, position=0, message="", message_args=()
                )
            elif kind == "frame":
                done = response.frame.step_index + 1
                self._go(Phase.RUNNING, steps_done=done, position=0, seconds_per_step=self._pace(done))
            elif kind == "final":
                self._go(Phase.DONE)

    def _pace(self, done: int) -> float | None:
        """Seconds per step measured on this stream once two frames came (a cache read is not a pace)."""
        now = time.monotonic()
        if self._first_frame is None:
            self._first_frame = (done, now)
        first, since = self._first_frame
        if self._state.source == pb.TRAJECTORY_SOURCE_CACHE or done <= first:
            return self._state.seconds_per_step
        return (now - since) / (done - first)

    def reconnecting(self, attempt: int, pause: float, attempts: int) -> None:
        # Made in the stream's reading thread (no session, so no language): `status_line` translates it.
        message = N_(
            "The image server went away (it may be restarting). Reconnecting in {seconds} s "
            "(attempt {attempt} of {attempts})…"
        )
        numbers = (("seconds", f"{pause:.0f}"), ("attempt", attempt), ("attempts", attempts))
        with self._lock:
            self._go(Phase.WAITING, message=message, message_args=numbers, position=0)

    def failed(self, message: str, code: grpc.StatusCode | None = None) -> None:
        with self._lock:
            if code == grpc.StatusCode.ABORTED:
                self._go(Phase.CLEARED, message=message or CLEARED_SENTENCE, message_args=())
            elif self._stop_asked or code == grpc.StatusCode.CANCELLED:
                self._go(Phase.STOPPED, message="", message_args=())
            else:
                self._go(Phase.FAILED, message=message, message_args=())

    def ended(self) -> None:
        """The stream closed without an error."""
        with self._lock:
            self._go(Phase.DONE)

    def stop(self) -> None:
        """The student asked to stop: it shows at once; the stream is cancelled by its owner."""
        with self._lock:
            self._stop_asked = True
            self._go(Phase.STOPPED, message="", message_args=())

    def paused(self, paused: bool) -> None:
        """What the class's pause switch says now."""
        with self._lock:
            state = self._state
            if paused and state.phase in (Phase.WAITING, Phase.RUNNING):
                self._go(Phase.PAUSED, resumes=state.phase)
            elif not paused and state.phase == Phase.PAUSED:
                self._state = replace(state, phase=state.resumes)


def _seconds(seconds: float) -> str:
    return _("about {seconds} s").format(seconds=max(1, round(seconds)))


def status_line(state: Snapshot, planned: str = YOUR_PICTURE) -> str:
    """What one stream is doing, in one sentence a student understands; `planned` names the run ("this example").

    `planned` is English, marked with `N_` where it is written: it is translated here.
    """
    planned = _(planned)
    if state.total_steps:
        steps = _("step {done} of {total}").format(done=state.steps_done, total=state.total_steps)
    else:
        steps = _("its first step")
    left = state.seconds_left()
    if state.phase == Phase.WAITING:
        if state.message:
            said_now = _(state.message)  # a reconnect (its numbers apart), or a sentence of ours
            return said_now.format(**dict(state.message_args)) if state.message_args else said_now
        if state.source == pb.TRAJECTORY_SOURCE_CACHE:
            return _("Reading from the cache…")
        then = ""
        if left is not None:
            then = _("; then {steps} steps, {seconds}").format(steps=state.total_steps, seconds=_seconds(left))
        if state.position == 1:
            return _("You are next: the model starts on {planned} as soon as a place is free{then}.").format(
                planned=planned, then=then
            )
        if state.position > 1:
            ahead = state.position - 1
            waiting = ngettext(
                "Waiting for the model: {count} picture ahead of yours{then}.",
                "Waiting for the model: {count} pictures ahead of yours{then}.",
                ahead,
            )
            return waiting.format(count=ahead, then=then)
        if left is not None:
            return _("Starting: {steps} steps to compute, {seconds}.").format(
                steps=state.total_steps, seconds=_seconds(left)
            )
        return _("Asking the image server…")
    if state.phase == Phase.RUNNING:
        if state.source == pb.TRAJECTORY_SOURCE_CACHE:
            return _("Reading from the cache: {steps}.").format(steps=steps)
        time_left = _(", {seconds} left").format(seconds=_seconds(left)) if left is not None else ""
        if state.source == pb.TRAJECTORY_SOURCE_JOINED:
            return _("A classmate asked for exactly this a moment ago: following their run, {steps}{left}.").format(
                steps=steps, left=time_left
            )
        return _("The model is computing {steps}{left}.").format(steps=steps, left=time_left)
    if state.phase == Phase.PAUSED:
        not_yet = _("{planned} has not started").format(planned=planned)
        where = steps if state.resumes == Phase.RUNNING else not_yet
        return _("Your teacher has paused the class's pictures ({where}). It goes on when they resume.").format(
            where=where
        )
    if state.phase == Phase.DONE:
        done = _("Done: {steps} steps in {seconds} s.")
        if state.source == pb.TRAJECTORY_SOURCE_CACHE:
            done = _("Done: {steps} steps in {seconds} s (from the cache).")
        return done.format(steps=state.total_steps, seconds=number(state.seconds, digits=1))
    if state.phase == Phase.STOPPED:
        return _("You stopped the generation.")
    return _(state.message)  # failed or cleared: the service's own sentence (ours translated)


def show(slot: st.delta_generator.DeltaGenerator, state: Snapshot, *, planned: str = YOUR_PICTURE) -> None:
    """Replace the stream's slot with its one status (a progress bar while it runs)."""
    line = said(status_line(state, planned))  # a failure is the service's sentence, which may quote a prompt
    if state.phase == Phase.RUNNING:
        slot.progress(state.steps_done / state.total_steps if state.total_steps else 0.0, text=line)
    elif state.phase == Phase.WAITING:
        slot.info(line, icon=":material/hourglass_top:")
    elif state.phase == Phase.PAUSED:
        slot.warning(line, icon=":material/pause:")
    elif state.phase == Phase.DONE:
        slot.caption(line)
    elif state.phase == Phase.STOPPED:
        slot.info(line, icon=":material/stop_circle:")
    elif state.phase == Phase.CLEARED:
        slot.warning(line, icon=":material/delete_sweep:")
    else:
        slot.error(line, icon=":material/error:")
