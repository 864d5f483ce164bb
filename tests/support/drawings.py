"""Drawings of a new shape as children make them on a canvas: a wobbly outline, drawn with a pen, never twice alike."""

from __future__ import annotations

import io
import math
import random

import numpy as np
from PIL import Image, ImageDraw

CANVAS = 256


def heart_outline(rng: random.Random, points: int = 90) -> list[tuple[float, float]]:
    """A heart's outline on the canvas, at a random size and place, with a hand's wobble."""
    scale = rng.uniform(0.55, 0.9) * CANVAS / 36
    cx = CANVAS / 2 + rng.uniform(-20, 20)
    cy = CANVAS / 2 + rng.uniform(-20, 20)
    outline = []
    for i in range(points):
        t = 2 * math.pi * i / points
        x = 16 * math.sin(t) ** 3
        y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
        wobble = 1 + rng.gauss(0, 0.025)
        outline.append((cx + x * scale * wobble, cy - y * scale * wobble))
    return outline


def heart_png(seed: int, pen: int = 6) -> bytes:
    """One child's heart: black strokes on white, as the canvas hands it in (PNG)."""
    rng = random.Random(seed)
    image = Image.new("RGB", (CANVAS, CANVAS), "white")
    outline = heart_outline(rng)
    ImageDraw.Draw(image).line([*outline, outline[0]], fill="black", width=pen, joint="curve")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def ink_of(png: bytes) -> np.ndarray:
    """True where a PNG drawing is dark."""
    return np.asarray(Image.open(io.BytesIO(png)).convert("L")) < 128
