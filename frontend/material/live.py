"""A picture being made, followed to its end with its latest latent and the model's guess drawn as the steps come.

The Playground and lesson 10 show a student's own picture this way; lessons show stored runs in the player.
"""

from __future__ import annotations

import streamlit as st

from frontend.drawing.views import enlarge
from frontend.player import LATENT_PANEL, guess_panel, guess_picture, live_picture
from frontend.stream.progress import Snapshot, show
from frontend.stream.reader import StreamReader
from frontend.stream.waiting import follow
from frontend.stream.wire import TrajectoryView


def follow_live(generation: StreamReader, status: st.delta_generator.DeltaGenerator, size: int) -> Snapshot:
    """Follow the stream to its end (its status in `status`), the two pictures `size` pixels wide; the end."""
    if generation.state.snapshot().final:
        ended = generation.state.snapshot()
        show(status, ended)
        return ended
    left, right = st.columns(2)
    left_image, right_image = left.empty(), right.empty()

    def draw(run: TrajectoryView) -> None:
        step = run.steps[-1] if run.steps else None
        if step is not None and step.latent_preview is not None:
            live_picture(left_image, enlarge(step.latent_preview, size), LATENT_PANEL)
            live_picture(right_image, enlarge(guess_picture(step), size), guess_panel(run))

    ended = follow(generation, status, show_done=True, on_step=draw)
    left_image.empty()
    right_image.empty()
    return ended
