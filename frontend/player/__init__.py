"""The trajectory player: a run's pictures sent to the browser once, then played there with no rerun.

A Streamlit component of our own (`web/`: plain HTML and JavaScript, nothing from
another host). It shows each step's pictures side by side with the step's t and
sigma, plays at a chosen speed, pauses, steps and scrubs, with the keyboard too
(space, left and right arrows). It sends the step back to Python only when the
lesson asks (`report=True`), once the student stops on a step.

For everyone: reachable with Tab, its focus drawn; each picture's text alternative says
which view it is, of which prompt (`prompt`), at which step; what the student does
(a step, play, pause) is said in a live region, never each step while it plays; with
the system's reduced motion asked for, it plays at one step a second unless told faster.

Its words come from the catalogs: Python translates them (`_words`) and sends them with
the pictures; the page's own English is only what shows before the first render.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import streamlit as st
import streamlit.components.v1 as components

from frontend.drawing.views import data_url
from frontend.drawing.views import inline_picture as live_picture  # the Playground's live previews
from frontend.language import N_, _, current_language, ngettext, number
from frontend.stream.wire import DECODERS, guess_picture

if TYPE_CHECKING:  # the player draws what the trajectory module reads; it never reads a stream itself
    from frontend.stream.wire import TrajectoryView

_COMPONENT = components.declare_component("trajectory_player", path=str(Path(__file__).parent / "web"))

NO_GUESS = N_("no guess yet: the first step makes it")
# What each picture is, said honestly: a decoder's picture of the guess, or the linear approximation.
# "the latent the loop carries": x_t itself, or x = x_t·√(1+σ²) for the sigma-form schedulers (lesson 3 says which).
LATENT_PANEL = N_("the noisy latent the loop carries: a rough colour sketch of its numbers")
GUESS_PREVIEW_PANEL = N_("the model's guess of the clean picture: a rough colour sketch, not decoded")
DECODED_PANELS = {
    "vae": N_("the model's guess, decoded by its VAE"),
    "taesd": N_("the model's guess, decoded by TAESD (a small stand-in for the VAE)"),
}
assert set(DECODED_PANELS) == DECODERS


@dataclass(frozen=True)
class PlayerFrame:
    """One step as the player shows it: a picture per panel (None: nothing at this step)."""

    label: str  # e.g. "step 3 of 25"
    pictures: tuple[np.ndarray | None, ...]
    timestep: float | None = None
    sigma: float | None = None
    note: str = ""  # a sentence under the pictures, about this step
    missing: str = ""  # what an empty panel says


SPEEDS = (1, 2, 4, 8, 16)  # steps a second, the speed menu's choices (web/index.html lists the same)


def _words(steps: int, panels: Sequence[str], prompt: str) -> dict[str, object]:
    """Every word the player's page shows or says, in this session's language ({...}: filled in by the page)."""
    if prompt:
        about = ngettext(
            "Trajectory player for the prompt “{prompt}”, {steps} step: {panels}",
            "Trajectory player for the prompt “{prompt}”, {steps} steps: {panels}", steps,
        ).format(prompt=prompt, steps=number(steps), panels="; ".join(panels))  # fmt: skip
    else:
        about = ngettext(
            "Trajectory player, {steps} step: {panels}", "Trajectory player, {steps} steps: {panels}", steps
        ).format(steps=number(steps), panels="; ".join(panels))
    return {
        "lang": current_language(),
        "title": _("Trajectory player"),
        "about": about,
        "back": _("One step back"),
        "back_title": _("One step back (left arrow)"),
        "forward": _("One step on"),
        "forward_title": _("One step on (right arrow)"),
        "play_title": _("Play or pause (space)"),
        "play": _("Play"),
        "pause": _("Pause"),
        "step": _("Step"),
        "speed": _("Speed"),
        "speeds": [ngettext("{n} step/s", "{n} steps/s", n).format(n=number(n)) for n in SPEEDS],
        "keys": _("Space: play or pause. Left and right arrows: one step. Tab to the player, or click it, first."),
        "alt": _("{caption}, {step}"),
        "alt_prompt": _("{caption} for the prompt “{prompt}”"),
        "alt_prompt_step": _("{caption} for the prompt “{prompt}”, {step}"),
        "step_noise": _("{step}, noise level {facts}"),
        "noise": _("noise level {facts}"),
        "ended": _("Played to the end: {step}"),
        "paused": _("Paused: {step}"),
        "playing": _("Playing from {step}, {speed}"),
    }


__all__ = [
    "DECODED_PANELS", "GUESS_PREVIEW_PANEL", "LATENT_PANEL", "PlayerFrame", "data_url", "decode_note", "decoder_of",
    "guess_panel", "guess_picture", "live_picture", "play", "play_trajectory", "trajectory_frames",
    "trajectory_panels",
]  # fmt: skip


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
    prompt: str = "",
) -> int:
    """Show the player; returns the step the student stopped on when `report`, else `start`.

    `panels` captions the pictures of every frame; `stills` are pictures that do not
    change with the step (the final image). `width` is each picture's width on screen;
    `prompt`, the prompt the pictures were made from, goes into their text alternatives.
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
    prompt = " ".join(prompt.split())  # an attribute and a sentence, set as text: never read as HTML
    words = _words(len(frames) - 1, panels, prompt)
    digest = hashlib.sha256(
        repr((list(panels), sent_frames, sent_stills, start, width, prompt, words)).encode()
    ).hexdigest()
    digest = digest[:16]
    value = _COMPONENT(
        id=digest, panels=list(panels), frames=sent_frames, stills=sent_stills, start=start, report=report,
        width=width, speed=speed, prompt=prompt, words=words,
        key=f"{key}-{digest}",  # another trajectory is another player: it starts at `start`, sending nothing
        default=start,
    )  # fmt: skip
    if not report or not isinstance(value, int):
        return start
    return max(0, min(value, len(frames) - 1))


def decoder_of(run: TrajectoryView) -> str:
    """Which decoder drew the run's per-step guesses ("vae", "taesd"), or "" when none did (the linear map only)."""
    names = {step.decoder for step in run.steps if step.decoded_x0 is not None}
    return next((name for name in ("vae", "taesd") if name in names), "")


def guess_panel(run: TrajectoryView) -> str:
    """The caption of `guess_picture`'s pictures for this run."""
    return _(DECODED_PANELS.get(decoder_of(run), GUESS_PREVIEW_PANEL))


def trajectory_frames(run: TrajectoryView) -> list[PlayerFrame]:
    """Step 0 (the starting noise) and every step: the latent x_t, the guess x0 and, when decoded, its picture."""
    decoded = bool(decoder_of(run))
    total = len(run.steps)
    frames = [
        PlayerFrame(
            _("the starting noise (step 0 of {total})").format(total=number(total)),
            (run.initial_preview, None, None) if decoded else (run.initial_preview, None),
            missing=_(NO_GUESS),
        )
    ]
    for index, step in enumerate(run.steps, start=1):
        pictures = (step.latent_preview, step.x0_preview, guess_picture(step)) if decoded else (
            step.latent_preview, step.x0_preview)  # fmt: skip
        label = _("step {step} of {total}").format(step=number(index), total=number(total))
        frames.append(PlayerFrame(label, pictures, step.timestep, step.sigma))
    return frames


def trajectory_panels(run: TrajectoryView) -> list[str]:
    """The captions of `trajectory_frames`' pictures: what each one is, approximation or decode."""
    panels = [_(LATENT_PANEL), _(GUESS_PREVIEW_PANEL)]
    if decoder_of(run):
        panels.append(guess_panel(run))
    return panels


def decode_note(run: TrajectoryView) -> str:
    """One sentence on what the decoded guesses cost, measured on this run ("" when it has none)."""
    decoder = decoder_of(run)
    timed = [step for step in run.steps if step.decoded_x0 is not None and step.decode_seconds > 0]
    if not decoder or not timed:
        return ""
    decode_ms = 1000 * sum(step.decode_seconds for step in timed) / len(timed)
    step_ms = 1000 * sum(step.seconds for step in timed) / len(timed)
    if decoder == "vae":
        sentence = _(
            "Every step's guess is decoded into a picture by its VAE: {decode_ms} ms of the {step_ms} ms each "
            "step took on the server that made this run."
        )
    else:
        sentence = _(
            "Every step's guess is decoded into a picture by TAESD: {decode_ms} ms of the {step_ms} ms each "
            "step took on the server that made this run."
        )
    return sentence.format(decode_ms=number(decode_ms, 1), step_ms=number(step_ms, 0))


def play_trajectory(
    run: TrajectoryView,
    *,
    key: str,
    start: int | None = None,
    report: bool = False,
    stills: Sequence[tuple[str, np.ndarray]] = (),
    width: int = 256,
) -> int:
    """The player over a whole run, from its starting noise (step 0) to its last step (the default start).

    Every page that shows a run's steps uses it: one layout, and the decoded guess wherever the run has it.
    """
    frames = trajectory_frames(run)
    step = play(
        frames, trajectory_panels(run), key=key, start=len(frames) - 1 if start is None else start, report=report,
        stills=stills, width=width, prompt=run.request.prompt,
    )  # fmt: skip
    note = decode_note(run)
    if note:
        st.caption(note)
    return step
