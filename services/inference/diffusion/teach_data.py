"""A class's drawings turned into Shapes training pictures, and how a picture's shape is compared with them.

Lesson 10 teaches Shapes a new word from the students' drawings. A drawing is
whatever a child puts on the canvas: usually an outline, wobbly, with gaps.
`silhouette` turns it into the filled shape it stands for, cropped and centred;
`training_pictures` paints those shapes exactly as the Shapes data program
paints its own (the same palette, places, sizes and captions, from
services/common/shapes_data.py), so the new word arrives in the model's world
on the same terms as "circle" or "star". `silhouette_iou` and
`known_silhouettes` let a judge ask whether a picture looks like the drawings
or like one of the four shapes the model already knew.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from services.common import shapes_data
from services.common.shapes_data import BACKGROUND, IMAGE_SIZE, PALETTE, SHAPES, SIZES, SUPERSAMPLE
from services.common.shapes_judge import foreground

# Gaps in a child's outline are closed before filling: the smallest of these (shares of the
# drawing's size) that makes the outline enclose something at least _ENCLOSED times its ink.
_GAP_SHARES = (0.02, 0.05, 0.1, 0.15, 0.2)
_ENCLOSED = 0.3
_DISC = ndimage.generate_binary_structure(2, 1)
# A silhouette pixel is inside the shape when at least half of it is.
_INSIDE = 0.5


@dataclass(frozen=True)
class Drawing:
    """One student's drawing: a boolean mask, True where there is ink (any height and width)."""

    mask: np.ndarray


def silhouette(drawing: Drawing, size: int = IMAGE_SIZE) -> np.ndarray:
    """The shape a drawing stands for: filled, cropped to it and centred in a `size` x `size` boolean mask.

    Children draw outlines: the ink is closed over small gaps, its holes are filled,
    and the largest piece is kept (a stray dot is not the shape). The shape's longer
    side spans the whole mask, as a Shapes shape's width is its box's longer side.
    """
    coverage = _filled(drawing)
    if coverage is None:
        raise ValueError("This drawing is empty: draw the shape with a few strokes first.")
    return _resized(coverage, size) >= _INSIDE


def _filled(drawing: Drawing) -> np.ndarray | None:
    """The filled shape, cropped to its box and padded to a square (float, 1 inside), or None for no ink."""
    ink = np.asarray(drawing.mask, dtype=bool)
    if ink.ndim != 2 or not ink.any():
        return None
    ys, xs = np.nonzero(ink)
    extent = max(np.ptp(ys), np.ptp(xs), 1)
    padded = np.pad(ink, round(max(_GAP_SHARES) * extent) + 2)  # room to close gaps at the canvas's edge
    filled = ndimage.binary_fill_holes(padded)
    for share in _GAP_SHARES:
        # Thicken the ink just enough that the outline encloses an inside, fill it, and thin it back:
        # the outside stays where it was drawn, and the gaps are bridged.
        reach = max(1, round(share * extent / 2))
        thick = ndimage.binary_dilation(padded, structure=_DISC, iterations=reach)
        solid = ndimage.binary_fill_holes(thick)
        if (solid & ~thick).sum() >= _ENCLOSED * padded.sum():
            thinned = ndimage.binary_erosion(solid, structure=_DISC, iterations=reach, border_value=0)
            filled = ndimage.binary_fill_holes(thinned | padded)
            break
    labels, count = ndimage.label(filled)
    sizes = ndimage.sum_labels(filled, labels, index=range(1, count + 1))
    shape = labels == int(np.argmax(sizes)) + 1
    ys, xs = np.nonzero(shape)
    crop = shape[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    side = max(crop.shape)
    square = np.zeros((side, side), dtype=np.float32)
    top, left = (side - crop.shape[0]) // 2, (side - crop.shape[1]) // 2
    square[top : top + crop.shape[0], left : left + crop.shape[1]] = crop
    return square


def _resized(square: np.ndarray, size: int) -> np.ndarray:
    """A square float mask resized to `size` x `size`, each pixel the share of it inside the shape."""
    image = Image.fromarray(square.astype(np.float32), mode="F")
    return np.asarray(image.resize((size, size), Image.Resampling.BOX if size < square.shape[0] else Image.BILINEAR))


def training_pictures(
    drawings: Sequence[Drawing], word: str, rng: random.Random, count: int
) -> tuple[np.ndarray, list[str]]:
    """`count` pictures of the drawn shape, uint8 [count, 64, 64, 3], with captions such as "a red heart on the left".

    Colour, place and size are drawn exactly as the Shapes data program draws them
    for its own shapes (its `sample_spec`, with the word in the shape's place), and
    the caption is its `caption_of`. The drawings take turns, so each is used alike.
    """
    shapes = [_filled(d) for d in drawings]
    if not shapes or any(s is None for s in shapes):
        raise ValueError("Every drawing needs some ink: remove the empty ones first.")
    pictures, captions = [], []
    for i in range(count):
        spec = dataclasses.replace(shapes_data.sample_spec(rng, allow_held_out=True), shape=word)
        pictures.append(_paint(shapes[i % len(shapes)], spec))
        captions.append(shapes_data.caption_of(spec.colour, word, spec.position, spec.size))
    return np.stack(pictures), captions


def _paint(shape: np.ndarray, spec: shapes_data.ShapeSpec) -> np.ndarray:
    """One picture as `shapes_data.draw` paints one: drawn larger, then shrunk, so edges are smooth."""
    big = IMAGE_SIZE * SUPERSAMPLE
    width = max(1, round(SIZES[spec.size] * big))
    alpha = np.zeros((big, big), dtype=np.float32)
    left = round(spec.centre[0] * big - width / 2)
    top = round(spec.centre[1] * big - width / 2)
    patch = _resized(shape, width)
    # Clip the patch to the canvas (a shape "anywhere" stays inside it, but rounding may touch the edge).
    y0, x0 = max(0, top), max(0, left)
    y1, x1 = min(big, top + width), min(big, left + width)
    alpha[y0:y1, x0:x1] = patch[y0 - top : y1 - top, x0 - left : x1 - left]
    colour, background = np.array(PALETTE[spec.colour], np.float32), np.array(BACKGROUND, np.float32)
    picture = background + alpha[..., None] * (colour - background)
    image = Image.fromarray(np.clip(picture + 0.5, 0, 255).astype(np.uint8))
    return np.asarray(image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX))


def mean_silhouette(drawings: Sequence[Drawing], size: int = IMAGE_SIZE) -> np.ndarray:
    """The class's shape: pixels inside at least half of the drawings' silhouettes."""
    return np.mean([silhouette(d, size) for d in drawings], axis=0) >= 0.5


def picture_silhouette(picture: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray | None:
    """The silhouette of the shape in a picture (its largest foreground piece), or None if there is none."""
    ink = foreground(picture)
    labels, count = ndimage.label(ink)
    if count == 0:
        return None
    sizes = ndimage.sum_labels(ink, labels, index=range(1, count + 1))
    return silhouette(Drawing(labels == int(np.argmax(sizes)) + 1), size)


def known_silhouettes(size: int = IMAGE_SIZE) -> dict[str, np.ndarray]:
    """The four shapes Shapes already knows, as drawn by its data program, as silhouettes."""
    out = {}
    for shape in SHAPES:
        spec = shapes_data.ShapeSpec("black", shape, "large", "in the center", (0.5, 0.5))
        out[shape] = picture_silhouette(np.asarray(shapes_data.draw(spec, IMAGE_SIZE * 4)), size)
    return out


def silhouette_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks of one size."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0
