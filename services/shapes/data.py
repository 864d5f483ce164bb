"""The Shapes data set: pictures drawn by a program, each with its exact caption.

The program is services/common/shapes_data.py (the service draws the training pictures
again for lesson 9, and may not import the training package); its names are the
training program's through this module.
"""

from __future__ import annotations

from services.common.shapes_data import (
    BACKGROUND,
    HELD_OUT_PAIRS,
    IMAGE_SIZE,
    PALETTE,
    POSITIONS,
    SHAPES,
    SIZES,
    ShapeSpec,
    batch,
    caption_of,
    describe,
    draw,
    evaluation_prompts,
    sample_spec,
    vocabulary,
)

__all__ = [
    "BACKGROUND",
    "HELD_OUT_PAIRS",
    "IMAGE_SIZE",
    "PALETTE",
    "POSITIONS",
    "SHAPES",
    "SIZES",
    "ShapeSpec",
    "batch",
    "caption_of",
    "describe",
    "draw",
    "evaluation_prompts",
    "sample_spec",
    "vocabulary",
]
