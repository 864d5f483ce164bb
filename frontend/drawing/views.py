"""Drawing helpers the lesson pages share: pictures, heatmaps, latent channels, errors."""

from __future__ import annotations

import base64
import hashlib
import html
import importlib
import io
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Literal, TypeVar

import numpy as np
import streamlit as st
from PIL import Image
from streamlit.delta_generator import DeltaGenerator

from frontend.client import StudentError
from frontend.language import N_, _, number

T = TypeVar("T")

PREVIEW_NOTE = N_("Preview: a quick linear colour map of the latent, not the VAE's decode.")  # shown as _(PREVIEW_NOTE)


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
        column.image(
            enlarge(grey(latent[channel], limit), width),
            caption=_("{caption}: channel {channel}").format(caption=caption, channel=number(channel)),
            alt=_("{caption}: the latent's channel {channel} in grey (light: high numbers, dark: low)").format(
                caption=caption, channel=number(channel)
            ),
        )  # fmt: skip


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


# An inline picture's markup: no words of its own (its caption is the caller's).
_FIGURE = (
    '<figure style="margin:0"><img src="{source}" alt="{text}" style="max-width:100%">'
    '<figcaption class="classroom-caption" style="font-size:0.875rem">{text}</figcaption></figure>'
)


def inline_picture(slot: DeltaGenerator, picture: np.ndarray, caption: str) -> None:
    """A picture that changes with a step or a stream, drawn inline in the page.

    `st.image` serves each picture as a media file that the end of the next script
    run deletes; a browser still fetching one then gets a 404 (a console error, seen
    under load: a stream's status redrawn every half second, a step scrubbed). Inline,
    the picture travels with the page's update.
    """
    text = plain(caption, "html")  # the caller's words (translated there), as the picture's caption and alt
    slot.markdown(_FIGURE.format(source=data_url(picture), text=text), unsafe_allow_html=True)


# Every character markdown (GitHub's, with Streamlit's math and :colour[...] directives) reads as syntax.
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~:$&])")
# Where GitHub's markdown finds a link in plain words (http://, www., a@b.c) and Streamlit an emoji, icon or
# colour (:smile:, :material/home:, :red[...]): found after the escapes are read, so escaping does not stop
# them. A word joiner there (U+2060, invisible, no space) leaves the words reading the same and links nothing.
_LINK_OR_SHORTCODE = re.compile(r"(?<=:)|(?=@)|(?<=www)(?=\.)", re.IGNORECASE)
WORD_JOINER = "\u2060"
# Characters that reorder the text around them (an RTL override turns "gnp.exe" round) or hide it
# (control characters other than whitespace, which becomes a space).
_HIDDEN = re.compile(
    "[\u0000-\u0008\u000e-\u001b\u007f-\u0084\u0086-\u009f\u061c\u200e\u200f\u202a-\u202e\u2060\u2066-\u2069\ufeff]"
)
Within = Literal["markdown", "html", "text"]


def plain(text: str, within: Within = "markdown") -> str:
    """Text a student or teacher typed, shown as typed wherever it goes: never a link, an image, a style or a tag.

    The one way such text reaches a page. Whitespace becomes single spaces (no new paragraph, heading or list)
    and characters that reorder or hide text are dropped; then, by where the text goes:

    - "markdown": st.markdown, st.caption, st.subheader, alerts, toasts, progress text, button labels,
      radio options, image captions (all read as markdown): every markdown character escaped, links broken;
    - "html": inside HTML (a component, an attribute, a block of `unsafe_allow_html`): HTML-escaped;
    - "text": where Streamlit shows text as it is (st.text, select box options, tables, charts' labels
      and tooltips): nothing more.
    """
    text = " ".join(_HIDDEN.sub("", text).split())
    if within == "html":
        return html.escape(text, quote=True)
    if within == "markdown":
        return _MARKDOWN.sub(r"\\\1", _LINK_OR_SHORTCODE.sub(WORD_JOINER, text))
    return text


# What markdown could read in a sentence: its characters, where a link starts, a shortcode, a list's start,
# a line break (a quoted text's next line could be a heading's underline, a code block or a rule).
_MARKUP_CHANCE = re.compile(
    r"[\\`*_{}\[\]<>#|~$&\n\r]|https?:|www\.|@|:[\w/+-]+[:\[]|^\s*([-+>]|\d+[.)])\s", re.IGNORECASE | re.MULTILINE
)


def said(sentence: str) -> str:
    """A sentence of the service's, for markdown: as written, unless markdown would read something in it.

    Refusals quote what a student typed ("already signed in as '...' on another computer"); such a
    sentence goes through `plain` whole, so the quoted name is shown as typed, never as a link or a picture.
    """
    return plain(sentence) if _MARKUP_CHANCE.search(sentence) else sentence


# What the lesson pages draw with: about a second to import on a small server, paid at start-up
# instead of by the first student who opens a lesson (who would see a blank page meanwhile).
LESSON_LIBRARIES = ("pandas", "altair", "frontend.drawing.charts", "frontend.material.examples")


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
        st.error(said(str(error)), icon=":material/error:")
        return None
