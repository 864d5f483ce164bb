"""The drawing canvas: a student draws a shape with a mouse, a finger or a pen, and hands it in as a PNG.

A Streamlit component of our own (`canvas_web/`: plain HTML and JavaScript, served by
this server, nothing from another host). The strokes stay in the browser until the
student presses Hand in: then the drawing (dark ink on white, 256 x 256 pixels) comes
back to Python once, with a nonce. The component keeps its last value across reruns;
`drawing_canvas` hands a drawing on only the first time its nonce is seen, so a page that
runs again for any other reason never hands the same drawing in twice. Its words come from
the catalogs (`_words`), sent with every render; the page shows English until the first.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import streamlit as st
import streamlit.components.v1 as components

from frontend.language import N_, _, current_language, ngettext

_COMPONENT = components.declare_component("drawing_canvas", path=str(Path(__file__).parent / "canvas_web"))

SIZE = 256  # pixels a side, as drawn and as sent
PNG_PREFIX = "data:image/png;base64,"
MAX_PNG_BYTES = 256 * 1024  # a drawing of strokes on white is a few KB; anything near this is not one
NOT_A_DRAWING = N_("That drawing did not arrive as a picture. Clear the canvas and draw it again.")


@dataclass(frozen=True)
class HandedIn:
    """One press of Hand in: the drawing as PNG bytes, and the nonce that names this press."""

    png: bytes
    nonce: str


def _seen_key(key: str) -> str:
    return f"{key}-handled-nonce"


def drawing_canvas(
    *, key: str, on_hand_in: Callable[[HandedIn], bool], on_refused: Callable[[str], None], line_width: int = 6
) -> None:
    """Show the canvas; call `on_hand_in` once for each press of Hand in, before the canvas is drawn.

    `on_hand_in` hands the drawing on and says whether it was taken: a taken drawing is cleared
    from the canvas, a refused one stays for the student to fix. Something that came back but is
    not a PNG drawing of a sensible size goes to `on_refused`, with the sentence to show.
    The drawing is read from the component's value as this run starts, so the canvas, drawn after,
    already hears what became of it.
    """
    answer_key = f"{key}-answer"
    handed: HandedIn | None = None
    try:
        handed = _new_drawing(st.session_state.get(key), key)
    except ValueError as error:
        on_refused(_(str(error)))  # the sentence is a msgid (NOT_A_DRAWING): shown in the reader's language
        # The canvas hears it was refused (it keeps the drawing and lets Hand in be pressed again).
        st.session_state[answer_key] = ("refused", st.session_state.get(_seen_key(key), ""))
    if handed is not None:
        st.session_state[answer_key] = ("accepted" if on_hand_in(handed) else "refused", handed.nonce)
    verdict, nonce = st.session_state.get(answer_key, ("", ""))
    _COMPONENT(
        key=key, accepted=nonce if verdict == "accepted" else "", refused=nonce if verdict == "refused" else "",
        line_width=line_width, words=_words(), default=None,
    )  # fmt: skip


def _words() -> dict[str, object]:
    """Every word the canvas's page shows or says, in this session's language ({...}: filled in by the page)."""
    return {
        "lang": current_language(),
        "title": _("Drawing canvas"),
        "area": _(
            "Drawing area, {size} by {size} pixels: draw the new shape here with a mouse, a finger or a pen"
        ).format(size=SIZE),
        "about": _(
            "A white square to draw on. Press and move a mouse, a finger or a pen to draw dark lines; draw the "
            "outline of the shape, the model fills it in. Undo takes back the last line, Clear starts again, and "
            "Hand in sends the drawing to your class as a picture. Drawing needs a pointer: if you cannot use one, "
            "team up with a classmate, the class's drawings are for everyone."
        ),
        "undo": _("Undo"),
        "clear": _("Clear"),
        "hand_in": _("Hand in"),
        "nothing": _("Nothing drawn yet."),
        # The browser picks the form for a count (Intl.PluralRules: one, many or other), each from the catalog.
        "drawn": {
            "one": ngettext("{count} line drawn.", "{count} lines drawn.", 1),
            "many": ngettext("{count} line drawn.", "{count} lines drawn.", 1_000_000),
            "other": ngettext("{count} line drawn.", "{count} lines drawn.", 2),
        },
        "took_back": _("Took back the last line. {counted}"),
        "took_back_all": _("Took back the last line. Nothing drawn now."),
        "cleared": _("Cleared. Nothing drawn now."),
        "handing_in": _("Handing in…"),
        "handed_in": _("Handed in. Draw another one if you like."),
        "not_handed_in": _("Not handed in: the page says why. Your drawing is still here."),
    }


def _new_drawing(value: object, key: str) -> HandedIn | None:
    """The drawing the component's value holds, the first time its nonce is seen; else None."""
    if not isinstance(value, dict):
        return None
    nonce = value.get("nonce")
    if not isinstance(nonce, str) or not nonce or st.session_state.get(_seen_key(key)) == nonce:
        return None
    st.session_state[_seen_key(key)] = nonce  # handled now, whatever becomes of it: never again
    return HandedIn(png_of(value.get("png")), nonce)


def png_of(url: object) -> bytes:
    """The PNG bytes of a `data:image/png;base64,` URL; ValueError for anything else."""
    if not isinstance(url, str) or not url.startswith(PNG_PREFIX) or len(url) > MAX_PNG_BYTES * 4 // 3 + 64:
        raise ValueError(NOT_A_DRAWING)
    try:
        png = base64.b64decode(url[len(PNG_PREFIX) :], validate=True)
    except (binascii.Error, ValueError) as error:
        raise ValueError(NOT_A_DRAWING) from error
    if not png.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ValueError(NOT_A_DRAWING)
    return png
