"""Which word paints where, on the trained Shapes model: the maps against the picture the judge sees."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from diffusers import StableDiffusionPipeline

from services.common.api import STUDENT_METADATA, pb
from services.common.codecs import tensor_from_proto
from services.common.shapes_judge import judge
from services.inference.diffusion.models import SHAPES_DIR, device_and_dtype
from services.shapes import data
from tests.integration.helpers import Stream, collect, request, run_pipeline

PROMPTS = 48
STEPS = 25
LAST_STEPS = 5  # "the last steps": the maps averaged over these


@pytest.fixture(scope="module")
def runs(shapes_stub) -> list[tuple[data.ShapeSpec, Stream]]:
    """48 prompts "a <colour> <shape> <position>", four at a time (they share UNet calls)."""
    specs = data.evaluation_prompts(PROMPTS, seed=0)

    def run(index: int) -> Stream:
        spec = specs[index]
        message = request(
            data.caption_of(spec.colour, spec.shape, spec.position),
            seed=index,
            num_inference_steps=STEPS,
            width=64,
            height=64,
            include=["cross_attention"],
        )
        return collect(shapes_stub.Generate(message, metadata=((STUDENT_METADATA, f"student-{index}"),)))

    with ThreadPoolExecutor(4) as pool:
        return list(zip(specs, pool.map(run, range(PROMPTS)), strict=True))


def word_map(stream: Stream, word: str) -> np.ndarray:
    """The word's map over the last steps, at picture size (each latent cell spread over its 8 x 8 pixels)."""
    tokens = [t for t in stream.header.prompt.tokens.tokens if t.kind != pb.TOKEN_KIND_PADDING]
    position = next(i for i, t in enumerate(tokens) if t.text.strip() == word)
    last = [tensor_from_proto(f.cross_attention.maps).astype(np.float32)[position] for f in stream.frames[-LAST_STEPS:]]
    return np.kron(np.mean(last, axis=0), np.ones((8, 8)))


def grown(box: tuple[int, int, int, int], factor: float = 1.25, size: int = 64) -> tuple[slice, slice]:
    """The judge's box around the shape, grown by 25% about its centre, clipped to the picture: (rows, columns)."""
    left, top, right, bottom = box
    cx, cy, half_w, half_h = (
        (left + right) / 2,
        (top + bottom) / 2,
        (right - left) * factor / 2,
        (bottom - top) * factor / 2,
    )
    rows = slice(max(0, round(cy - half_h)), min(size, round(cy + half_h)))
    columns = slice(max(0, round(cx - half_w)), min(size, round(cx + half_w)))
    return rows, columns


def concentration(attention: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """The share of the map's mass inside the grown box, over the box's share of the picture."""
    rows, columns = grown(box)
    box_share = (rows.stop - rows.start) * (columns.stop - columns.start) / attention.size
    return float(attention[rows, columns].sum() / attention.sum() / box_share)


# Measured with the committed weights (25 steps, DPM-Solver++, g = 7.5, seed = prompt index): the
# shape word's mass in the grown box is 3.96 times the box's share of the picture (median), and
# all 48 prompts reach 2; the colour word 3.93, all 48 at 2. Before the model was trained with the
# localisation loss (services/shapes/localise.py) the shape word's median was 1.1 and none reached 2.
@pytest.mark.parametrize("word", ["shape", "colour"])
def test_the_words_that_describe_the_shape_attend_to_it_at_the_last_steps(runs, word):
    ratios = []
    for spec, stream in runs:
        verdict = judge(stream.image)
        said = getattr(spec, word)  # "star", "red", ...
        ratios.append(concentration(word_map(stream, said), verdict.box) if verdict.found else 0.0)
    share = np.mean(np.array(ratios) >= 2.0)
    assert share >= 0.8, f"{share:.0%} of prompts at 2x or more; median {np.median(ratios):.2f}"


def test_the_position_word_attends_to_the_side_it_names(runs):
    """The place words localise too: "left" and "right" look at their own half of the picture."""
    sided = [(spec, stream) for spec, stream in runs if spec.position in ("on the left", "on the right")]
    assert len(sided) >= 16
    right = []
    for spec, stream in sided:
        attention = word_map(stream, spec.position.split()[-1])
        named, other = (
            (attention[:, :32], attention[:, 32:])
            if spec.position == "on the left"
            else (attention[:, 32:], attention[:, :32])
        )
        right.append(named.sum() > other.sum())
    assert np.mean(right) >= 0.9, right


def test_with_the_maps_on_the_shapes_stream_still_equals_the_pipeline(shapes_stub):
    """Shapes attends at the latent's own grid too (8 x 8): the probe sits beside every layer, changing nothing."""
    pipe = StableDiffusionPipeline.from_pretrained(
        SHAPES_DIR, safety_checker=None, requires_safety_checker=False, torch_dtype=device_and_dtype("auto")[1]
    ).to(device_and_dtype("auto")[0])
    pipe.set_progress_bar_config(disable=True)
    spec = request(
        "a green star on the right",
        seed=3,
        guidance_scale=7.5,
        num_inference_steps=12,
        width=64,
        height=64,
        scheduler="dpm_solver_pp",
        include=["latent", "cross_attention", "decoded_x0_preview"],
    )
    stream = collect(shapes_stub.Generate(spec))
    assert [(r.height, r.width) for r in stream.frames[0].cross_attention.resolutions] == [(8, 8), (4, 4)]
    config = json.loads((SHAPES_DIR / "scheduler" / "scheduler_config.json").read_text())
    image, latents = run_pipeline(pipe, config, spec)
    np.testing.assert_array_equal(stream.image, image)
    for frame, expected in zip(stream.frames, latents, strict=True):
        np.testing.assert_array_equal(tensor_from_proto(frame.latent), expected[0].half().numpy())
