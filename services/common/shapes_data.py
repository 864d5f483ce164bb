"""The Shapes data set: pictures drawn by a program, each with its exact caption.

Every picture is one upright shape on a plain background. Its caption says
what is there and nothing else:

    a|an [small|large] <colour> <shape> [<position>]

e.g. "a red circle on the left", "an orange star", "a large blue star", "a small black square at
the top". A caption without a position word puts the shape anywhere (inside the
picture); without a size word the shape is medium. The pictures are generated on
the fly from a seed, so the data set costs no disk and is the same every time.

A few colour-shape pairs never appear in training (`HELD_OUT_PAIRS`): asking the
model for them shows whether it composes words it has never seen together.

The program lives here, beside the world it draws (shapes_world.py), because two
sides use it: the training program (services/shapes/, through its `data` module)
and the service, which draws the very training pictures again for lesson 9.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from services.common.shapes_world import (
    BACKGROUND,
    HELD_OUT_PAIRS,
    IMAGE_SIZE,
    PALETTE,
    POSITIONS,
    SHAPES,
    SIZES,
)

# How often a training caption has no position word (the shape goes anywhere).
_ANYWHERE_SHARE = 0.2
# Drawn this many times larger, then shrunk: smooth edges, as a camera would see them.
SUPERSAMPLE = 4
# A star's inner corners sit at this fraction of its outer radius.
_STAR_INNER = 0.45


@dataclass(frozen=True)
class ShapeSpec:
    """One picture's content: what the caption says, and where the shape really is."""

    colour: str
    shape: str
    size: str  # "small", "" (medium) or "large"
    position: str  # a key of POSITIONS, or "" (anywhere)
    centre: tuple[float, float]  # where the shape's centre really is, as fractions

    @property
    def caption(self) -> str:
        words = [w for w in (self.size, self.colour, self.shape, self.position) if w]
        article = "an" if words[0][0] in "aeiou" else "a"  # "an orange circle", "a large orange circle"
        return " ".join([article, *words])


def describe() -> str:
    """What the data set holds, in plain sentences (the model card and the model page say it)."""
    held_out = ", ".join(f"{c} {s}" for c, s in sorted(HELD_OUT_PAIRS))
    return (
        f"Trained on {IMAGE_SIZE}x{IMAGE_SIZE} pictures drawn by a program, one shape on a plain background, "
        f"each with its exact caption, such as 'a red circle on the left'. "
        f"Colours: {', '.join(PALETTE)}. Shapes: {', '.join(SHAPES)}. "
        f"Places: {', '.join(POSITIONS)}, or anywhere when the caption names none. "
        f"Sizes: small, large, or medium when the caption names none. "
        f"It never saw these pairs in training: {held_out}; asking for them shows whether it combines words "
        f"it learned apart. Words outside its captions mean nothing to it."
    )


def vocabulary() -> list[str]:
    """Every word a caption can use, from every caption the program can write (the model card lists them)."""
    words = {
        word
        for colour in PALETTE
        for shape in SHAPES
        for size in SIZES
        for position in ("", *POSITIONS)
        for word in caption_of(colour, shape, position, size).split()
    }
    return sorted(words)


def caption_of(colour: str, shape: str, position: str = "", size: str = "") -> str:
    """The caption for a shape, in the data set's own words."""
    return ShapeSpec(colour, shape, size, position, POSITIONS.get(position, (0.5, 0.5))).caption


def sample_spec(rng: random.Random, allow_held_out: bool = False) -> ShapeSpec:
    """A random picture's content (the held-out pairs only when asked)."""
    while True:
        colour, shape = rng.choice(list(PALETTE)), rng.choice(SHAPES)
        if allow_held_out or (colour, shape) not in HELD_OUT_PAIRS:
            break
    size = rng.choice(list(SIZES))
    if rng.random() < _ANYWHERE_SHARE:
        half = SIZES[size] / 2 + 0.03
        return ShapeSpec(colour, shape, size, "", (rng.uniform(half, 1 - half), rng.uniform(half, 1 - half)))
    position = rng.choice(list(POSITIONS))
    return ShapeSpec(colour, shape, size, position, POSITIONS[position])


def _outline(shape: str, cx: float, cy: float, width: float) -> list[tuple[float, float]]:
    """The corners of an upright shape centred at (cx, cy), `width` across its bounding box."""
    r = width / 2
    if shape == "square":
        return [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if shape == "triangle":
        # Apex up; the box is `width` wide and `width` tall, centred on (cx, cy).
        return [(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if shape == "star":
        # Five points up; scaled so its widest span is `width`, centred on its box.
        outer = r / math.cos(math.radians(18))
        corners = []
        for i in range(10):
            radius = outer if i % 2 == 0 else outer * _STAR_INNER
            angle = math.radians(-90 + 36 * i)
            corners.append((radius * math.cos(angle), radius * math.sin(angle)))
        top = min(y for _, y in corners)
        bottom = max(y for _, y in corners)
        shift = (top + bottom) / 2
        return [(cx + x, cy + y - shift) for x, y in corners]
    raise ValueError(f"unknown shape {shape!r}")


def draw(spec: ShapeSpec, size: int = 64) -> Image.Image:
    """Draw the picture a caption describes: an RGB image `size` pixels square."""
    big = size * SUPERSAMPLE
    picture = Image.new("RGB", (big, big), BACKGROUND)
    pen = ImageDraw.Draw(picture)
    cx, cy = spec.centre[0] * big, spec.centre[1] * big
    width = SIZES[spec.size] * big
    colour = PALETTE[spec.colour]
    if spec.shape == "circle":
        r = width / 2
        pen.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    else:
        pen.polygon(_outline(spec.shape, cx, cy, width), fill=colour)
    return picture.resize((size, size), Image.Resampling.BOX)


def batch(rng: random.Random, count: int, size: int = 64) -> tuple[np.ndarray, list[str]]:
    """`count` random pictures as float32 [count, 3, size, size] in [-1, 1], with their captions."""
    specs = [sample_spec(rng) for _ in range(count)]
    pixels = np.stack([np.asarray(draw(s, size), dtype=np.float32) for s in specs])
    return (pixels / 127.5 - 1.0).transpose(0, 3, 1, 2), [s.caption for s in specs]


def evaluation_prompts(count: int, seed: int = 0, held_out: bool = False) -> list[ShapeSpec]:
    """A fixed set of prompts that name a colour, a shape and a position (seen or held-out pairs)."""
    seen = [(c, s) for c in PALETTE for s in SHAPES if (c, s) not in HELD_OUT_PAIRS]
    pairs = sorted(HELD_OUT_PAIRS) if held_out else seen
    rng = random.Random(seed)
    specs = []
    for i in range(count):
        colour, shape = pairs[i % len(pairs)]
        position = list(POSITIONS)[(i // len(pairs) + i) % len(POSITIONS)]
        size = rng.choice(list(SIZES))
        specs.append(ShapeSpec(colour, shape, size, position, POSITIONS[position]))
    return specs
