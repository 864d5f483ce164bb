"""Drawings of a new shape as children make them on a canvas: a wobbly outline, drawn with a pen, never twice alike."""

from __future__ import annotations

import io
import math
import random

import numpy as np
from PIL import Image, ImageDraw

from services.inference.diffusion.teach_data import Drawing

CANVAS = 256


def heart_point(t: float) -> tuple[float, float]:
    """The classic heart curve, about 32 units wide, y pointing down (as on a canvas)."""
    x = 16 * math.sin(t) ** 3
    y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
    return x, -y


def heart_outline(rng: random.Random, canvas: int = CANVAS) -> list[tuple[float, float]]:
    """The pen's path of a child's heart: wobbly, jittered, not always closed, anywhere, any size."""
    scale = rng.uniform(0.35, 0.8) * canvas / 34
    cx, cy = rng.uniform(0.35, 0.65) * canvas, rng.uniform(0.35, 0.65) * canvas
    waves = [(rng.uniform(0, 0.05), k + 2, rng.uniform(0, 2 * math.pi)) for k in range(3)]
    start, gap = rng.uniform(0, 2 * math.pi), rng.uniform(0, 0.15)  # where the pen starts, and how short it stops
    points = []
    for i in range(80):
        t = start + (2 * math.pi - gap) * i / 79
        wobble = 1 + sum(a * math.sin(k * t + p) for a, k, p in waves)
        x, y = heart_point(t)
        points.append((cx + scale * wobble * x + rng.gauss(0, 1), cy + scale * wobble * y + rng.gauss(0, 1)))
    return points


def wobbly_heart(rng: random.Random, canvas: int = CANVAS) -> Drawing:
    """A heart as a child draws one: its outline drawn with a pen 4 to 8 pixels wide."""
    points = heart_outline(rng, canvas)
    image = Image.new("1", (canvas, canvas), 0)
    ImageDraw.Draw(image).line(points, fill=1, width=rng.randint(4, 8), joint="curve")
    return Drawing(np.asarray(image, dtype=bool))


def class_drawings(count: int = 12, seed: int = 0) -> list[Drawing]:
    """A class's hearts, each child's its own."""
    rng = random.Random(seed)
    return [wobbly_heart(rng) for _ in range(count)]


def heart_png(seed: int) -> bytes:
    """One child's heart as the canvas hands it in: black strokes on white (PNG)."""
    ink = wobbly_heart(random.Random(seed)).mask
    out = io.BytesIO()
    Image.fromarray(np.where(ink, 0, 255).astype(np.uint8)).save(out, format="PNG")
    return out.getvalue()


def ink_of(png: bytes) -> np.ndarray:
    """True where a PNG drawing is dark."""
    return np.asarray(Image.open(io.BytesIO(png)).convert("L")) < 128
