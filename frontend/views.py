"""Drawing helpers the lesson pages share: pictures, heatmaps, latent channels, errors."""

from __future__ import annotations

import importlib
import re
import threading
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import streamlit as st
from PIL import Image

from frontend.client import StudentError

T = TypeVar("T")

PREVIEW_NOTE = "Preview: a quick linear colour map of the latent, not the VAE's decode."


def enlarge(rgb: np.ndarray, width: int = 256, height: int | None = None) -> np.ndarray:
    """Scale a small picture up for the screen, keeping its pixels visible (and its shape, unless told)."""
    height = height or round(rgb.shape[0] * width / rgb.shape[1])
    return np.asarray(Image.fromarray(rgb).resize((width, height), Image.Resampling.NEAREST))


def grey(array: np.ndarray, limit: float | None = None) -> np.ndarray:
    """A 2-D array as a grey picture, 0 in the middle grey (symmetric scale)."""
    limit = limit or float(np.abs(array).max()) or 1.0
    return ((np.clip(array / limit, -1, 1) + 1) * 127.5).astype(np.uint8)


def diverging(matrix: np.ndarray) -> np.ndarray:
    """A 2-D array as blue (negative) - white - red (positive)."""
    limit = float(np.abs(matrix).max()) or 1.0
    x = np.clip(matrix / limit, -1, 1)[..., None]
    red, white, blue = np.array([178, 24, 43]), np.array([247, 247, 247]), np.array([33, 102, 172])
    rgb = np.where(x > 0, white + x * (red - white), white - x * (blue - white))
    return rgb.astype(np.uint8)


def show_channels(latent: np.ndarray, caption: str, width: int = 128) -> None:
    """The latent's four channels side by side, each as a grey picture."""
    limit = float(np.abs(latent).max()) or 1.0
    columns = st.columns(latent.shape[0])
    for channel, column in enumerate(columns):
        column.image(enlarge(grey(latent[channel], limit), width), caption=f"{caption}: channel {channel}")


_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~:$])")


def plain(text: str) -> str:
    """Text a student typed, safe inside markdown: shown as typed, never as links, images or styles."""
    return _MARKDOWN.sub(r"\\\1", " ".join(text.split()))


# What the lesson pages draw with: about a second to import on a small server, paid at start-up
# instead of by the first student who opens a lesson (who would see a blank page meanwhile).
LESSON_LIBRARIES = ("pandas", "altair", "frontend.charts", "frontend.catalog")


@st.cache_resource
def preload_lesson_libraries() -> threading.Thread:
    """Import the lessons' libraries in the background, once per process."""
    thread = threading.Thread(
        target=lambda: [importlib.import_module(name) for name in LESSON_LIBRARIES], name="preload", daemon=True
    )
    thread.start()
    return thread


def guarded(action: Callable[[], T]) -> T | None:
    """Run a call to the service; on failure show the student's sentence instead of a trace."""
    try:
        return action()
    except StudentError as error:
        st.error(str(error), icon=":material/error:")
        return None
