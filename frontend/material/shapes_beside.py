"""Lessons 9 and 10 on a server whose model is not Shapes: they ask Shapes, which runs beside it, and say so."""

from __future__ import annotations

import streamlit as st

from frontend.client import shapes_beside
from frontend.language import N_, _

BESIDE = N_(
    "This lesson runs on Shapes, the small model made for this classroom, which runs beside this server's own "
    "model: every picture on this page is Shapes' picture."
)


def say_shapes_beside() -> None:
    """Under the title: which model paints this page's pictures, when it is not the one the other lessons use."""
    if shapes_beside():
        st.caption(_(BESIDE), help=_("The other lessons and the Playground use the server's own model."))
