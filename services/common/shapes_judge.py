"""A pixel judge for Shapes pictures: which colour, which shape, where.

It looks at a picture as a student would: the shape is the pixels far from the
background; its colour is the nearest palette colour to their median; its
position is the nearest anchor to the centre of its bounding box; its kind comes
from how much of its box it fills and how convex it is (a square fills its box,
a circle about 79% of it, a triangle about half; a star is the only one far from
convex). It is how the model's accuracy is measured, and what tests of meaning
ask ("does the red prompt give a red picture?").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull

from services.common.shapes_world import BACKGROUND, PALETTE, POSITIONS

# A pixel belongs to the shape when it is this far (RGB distance) from the background.
_FOREGROUND_DISTANCE = 60.0
# Fewer pixels than this is no shape at all.
_MIN_PIXELS = 6
# Below this solidity (area / convex hull) a shape is a star.
_STAR_SOLIDITY = 0.78
# Fill of the bounding box: above the first a square, above the second a circle, else a triangle.
_SQUARE_FILL = 0.9
_CIRCLE_FILL = 0.66

_PALETTE_NAMES = list(PALETTE)
_PALETTE_RGB = np.array([PALETTE[n] for n in _PALETTE_NAMES], dtype=np.float32)


@dataclass(frozen=True)
class Verdict:
    """What the judge sees in one picture."""

    found: bool
    colour: str = ""
    shape: str = ""
    position: str = ""  # the nearest of POSITIONS' anchors
    centre: tuple[float, float] = (0.0, 0.0)  # the bounding box's centre, as fractions of width and height
    box: tuple[int, int, int, int] = (0, 0, 0, 0)  # left, top, right, bottom (exclusive), in pixels
    coverage: float = 0.0  # the shape's share of the picture
    fill: float = 0.0
    solidity: float = 0.0


def foreground(picture: np.ndarray) -> np.ndarray:
    """Which pixels of an [H, W, 3] uint8 picture are far from the background."""
    distance = np.linalg.norm(picture.astype(np.float32) - np.array(BACKGROUND, dtype=np.float32), axis=-1)
    return distance > _FOREGROUND_DISTANCE


def nearest_colour(rgb: np.ndarray) -> str:
    """The palette's name for the colour nearest `rgb`."""
    return _PALETTE_NAMES[int(np.argmin(np.linalg.norm(_PALETTE_RGB - rgb.astype(np.float32), axis=1)))]


def _solidity(mask: np.ndarray) -> float:
    ys, xs = np.nonzero(mask)
    # Every pixel's four corners, so a one-pixel-wide shape still has an area.
    corners = np.concatenate([np.stack([xs + dx, ys + dy], axis=1) for dx in (0, 1) for dy in (0, 1)])
    try:
        hull = ConvexHull(corners.astype(np.float64))
    except Exception:  # all corners on a line: no hull, nothing convex to compare
        return 1.0
    return float(mask.sum() / hull.volume)  # in 2-D, `volume` is the area


def judge(picture: np.ndarray) -> Verdict:
    """Judge an [H, W, 3] uint8 picture holding (at most) one shape."""
    mask = foreground(picture)
    labels, count = ndimage.label(mask)
    if count == 0:
        return Verdict(found=False)
    sizes = ndimage.sum_labels(mask, labels, index=range(1, count + 1))
    biggest = int(np.argmax(sizes)) + 1
    shape_mask = labels == biggest
    area = int(shape_mask.sum())
    if area < _MIN_PIXELS:
        return Verdict(found=False)
    ys, xs = np.nonzero(shape_mask)
    left, top, right, bottom = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    height, width = mask.shape
    centre = ((left + right) / 2 / width, (top + bottom) / 2 / height)
    position = min(POSITIONS, key=lambda p: (POSITIONS[p][0] - centre[0]) ** 2 + (POSITIONS[p][1] - centre[1]) ** 2)
    fill = area / ((right - left) * (bottom - top))
    solidity = _solidity(shape_mask)
    if solidity < _STAR_SOLIDITY:
        kind = "star"
    elif fill > _SQUARE_FILL:
        kind = "square"
    elif fill > _CIRCLE_FILL:
        kind = "circle"
    else:
        kind = "triangle"
    return Verdict(
        found=True,
        colour=nearest_colour(np.median(picture[shape_mask], axis=0)),
        shape=kind,
        position=position,
        centre=centre,
        box=(left, top, right, bottom),
        coverage=area / (height * width),
        fill=fill,
        solidity=solidity,
    )
