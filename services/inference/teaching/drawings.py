"""A class's drawings of its new shape (lesson 10): read, checked and kept as plain black-and-white pictures.

A drawing arrives as a PNG from the front end's canvas. Only what is checked here is
kept: a PNG of at most MAX_SIDE x MAX_SIDE pixels and MAX_BYTES, redrawn as a one-bit
picture (ink where it is darker than mid-grey), with some ink and some paper. What a
student sent is never stored or shown as it came: pictures that are not PNGs, huge
pictures in small files and files with anything hidden in them stop here.
"""

from __future__ import annotations

import base64
import io
import json
import secrets
from dataclasses import dataclass

import numpy as np
from PIL import Image

from services.common.i18n import N_, Sentence

MAX_SIDE = 256  # the canvas is 256 x 256
MAX_BYTES = 64 * 2**10
MIN_INK, MAX_INK = 0.004, 0.7  # the share of the picture that is ink: a dot or a flood is not a shape

# Each refusal's sentence, a template (the service sends it with its arguments; the student reads it in their language).
NOT_A_DRAWING = N_("This drawing could not be read. Draw on the canvas and press Hand in again.")
TOO_LARGE = N_("This drawing is too large: a drawing may be at most {side} x {side} pixels.")
TOO_LITTLE_INK = N_("This drawing is almost empty. Draw the shape with a line all the way round, then hand it in.")
TOO_MUCH_INK = N_("This drawing is almost all ink. Clear the canvas and draw just the shape's outline.")


class NotADrawing(ValueError):
    """A drawing refused, with its sentence for the student (`sentence`, a `Sentence`)."""

    def __init__(self, template: str) -> None:
        self.sentence = Sentence(template, side=MAX_SIDE) if template == TOO_LARGE else Sentence(template)
        super().__init__(self.sentence)


@dataclass(frozen=True)
class ClassDrawing:
    """One drawing in the class's set: who drew it (their id and display name) and the picture (one-bit PNG)."""

    drawing_id: str
    student: str
    name: str
    png: bytes

    def to_json(self) -> dict[str, str]:
        return {"id": self.drawing_id, "student": self.student, "name": self.name,
                "png": base64.b64encode(self.png).decode()}  # fmt: skip

    @classmethod
    def from_json(cls, item: dict[str, str]) -> ClassDrawing:
        return cls(item["id"], item["student"], item["name"], base64.b64decode(item["png"]))

    def mask(self) -> np.ndarray:
        """True where the ink is."""
        return ~np.asarray(Image.open(io.BytesIO(self.png)).convert("1"), dtype=bool)


def read_png(data: bytes) -> bytes:
    """The drawing as a clean one-bit PNG (ink black); NotADrawing, with the student's sentence, if it is not one."""
    if not data or len(data) > MAX_BYTES:
        raise NotADrawing(TOO_LARGE if data else NOT_A_DRAWING)
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format != "PNG":
                raise NotADrawing(NOT_A_DRAWING)
            if image.width > MAX_SIDE or image.height > MAX_SIDE or image.width < 16 or image.height < 16:
                raise NotADrawing(TOO_LARGE if image.width > MAX_SIDE or image.height > MAX_SIDE else NOT_A_DRAWING)
            grey = image.convert("LA")  # a transparent canvas counts as paper
            pixels = np.asarray(grey, dtype=np.float32)
    except Image.DecompressionBombError as error:  # a header claiming a huge picture: refused before decoding
        raise NotADrawing(TOO_LARGE) from error
    except NotADrawing:
        raise
    except Exception as error:  # any decoder failure (its own words are not a student's): not a picture we read
        raise NotADrawing(NOT_A_DRAWING) from error
    lightness = pixels[..., 0] * (pixels[..., 1] / 255) + 255 * (1 - pixels[..., 1] / 255)
    ink = lightness < 128
    share = float(ink.mean())
    if share < MIN_INK:
        raise NotADrawing(TOO_LITTLE_INK)
    if share > MAX_INK:
        raise NotADrawing(TOO_MUCH_INK)
    out = io.BytesIO()
    Image.fromarray(~ink).convert("1").save(out, format="PNG", optimize=True)
    return out.getvalue()


def new_drawing(student: str, name: str, png: bytes) -> ClassDrawing:
    return ClassDrawing(secrets.token_hex(8), student, name, png)


def load_set(payload: bytes | None) -> list[ClassDrawing]:
    return [ClassDrawing.from_json(item) for item in json.loads(payload)] if payload else []


def dump_set(drawings: list[ClassDrawing]) -> bytes:
    return json.dumps([d.to_json() for d in drawings]).encode()
