"""The Shapes model's world, as its captions name it: the palette, the shapes, the places, the sizes.

The training program (services/shapes/data.py) draws from these, and the pixel
judge (services/common/shapes_judge.py) reads pictures by them; both the service
and the front end (which judges the pictures a lesson shows) use them.
"""

from __future__ import annotations

# Fixed RGB values, so that anyone (and `judge.py`) can tell the colours apart.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "orange": (245, 140, 30),
    "yellow": (235, 210, 40),
    "green": (40, 170, 70),
    "blue": (40, 90, 220),
    "purple": (140, 70, 200),
    "pink": (240, 120, 180),
    "black": (30, 30, 30),
}
BACKGROUND = (245, 245, 240)
IMAGE_SIZE = 64  # pixels: the model's native size (its latent is 8x8)
SHAPES = ("circle", "square", "triangle", "star")
# The centre of the shape, as a fraction of the picture's width and height.
POSITIONS: dict[str, tuple[float, float]] = {
    "on the left": (0.25, 0.5),
    "on the right": (0.75, 0.5),
    "at the top": (0.5, 0.25),
    "at the bottom": (0.5, 0.75),
    "in the center": (0.5, 0.5),
}
# The shape's width (its bounding box's longer side) as a fraction of the picture's.
SIZES: dict[str, float] = {"small": 0.22, "": 0.32, "large": 0.42}
# Pairs the model never sees in training; lessons ask for them to show composition.
HELD_OUT_PAIRS: frozenset[tuple[str, str]] = frozenset(
    {("purple", "triangle"), ("orange", "star"), ("green", "square")}
)
