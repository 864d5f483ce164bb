"""Lesson 10's drawings as the service keeps them, and the class's word record as every page reads it."""

from __future__ import annotations

import dataclasses
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from services.common.api import pb
from services.inference.diffusion.training import Ended
from services.inference.teaching import drawings
from services.inference.teaching.progress import STALE, WordState, samples_sheet
from tests.support.drawings import heart_png, ink_of


def png_of(pixels: np.ndarray, mode: str | None = None) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels, mode).save(out, format="PNG")
    return out.getvalue()


def test_a_drawing_is_kept_as_its_ink_in_black_and_white():
    kept = drawings.read_png(heart_png(3))
    picture = Image.open(io.BytesIO(kept))
    assert picture.mode == "1" and picture.size == (256, 256)
    assert (ink_of(kept) == ink_of(heart_png(3))).mean() > 0.99
    assert len(kept) < len(heart_png(3))


def test_a_transparent_canvas_counts_as_paper():
    rgba = np.zeros((64, 64, 4), dtype=np.uint8)  # transparent black everywhere ...
    rgba[20:40, 30, :] = (0, 0, 0, 255)  # ... but one opaque line
    mask = drawings.ClassDrawing("d", "s", "n", drawings.read_png(png_of(rgba, "RGBA"))).mask()
    assert mask.sum() == 20 and mask[20:40, 30].all()


@pytest.mark.parametrize(
    ("data", "sentence"),
    [
        (b"", drawings.NOT_A_DRAWING),
        (b"GIF89a" + bytes(100), drawings.NOT_A_DRAWING),
        (png_of(np.full((300, 300), 255, dtype=np.uint8)), drawings.TOO_LARGE),
        (png_of(np.full((256, 256), 255, dtype=np.uint8)), drawings.TOO_LITTLE_INK),
        (png_of(np.zeros((256, 256), dtype=np.uint8)), drawings.TOO_MUCH_INK),
        (bytes(drawings.MAX_BYTES + 1), drawings.TOO_LARGE),
    ],
)
def test_what_is_not_a_drawing_is_refused_with_a_sentence(data, sentence):
    with pytest.raises(ValueError) as caught:
        drawings.read_png(data)
    assert caught.value.sentence.template == sentence  # sent as its template: the student reads their language
    assert str(caught.value) == sentence.format(side=drawings.MAX_SIDE)


def test_a_small_file_that_claims_a_huge_picture_is_refused_before_it_is_decoded():
    """A PNG header saying 30,000 x 30,000 pixels, in a few hundred bytes: refused from its header."""
    header = struct.pack(">IIBBBBB", 30_000, 30_000, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + header
    data = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(header)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    data += struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    with pytest.raises(ValueError, match="too large"):
        drawings.read_png(data)


def test_a_set_of_drawings_goes_to_its_record_and_back():
    kept = [drawings.new_drawing("s1", "<b>Sam</b>", drawings.read_png(heart_png(1)))]
    again = drawings.load_set(drawings.dump_set(kept))
    assert again == kept and again[0].name == "<b>Sam</b>"
    assert drawings.load_set(None) == [] and drawings.load_set(b"[]") == []


def test_the_word_record_reads_back_and_a_silent_training_reads_as_failed():
    state = WordState(phase=pb.TEACHING_PHASE_TRAINING, word="heart", step=3, total=10, losses=[0.5, 0.4, 0.3],
                      samples_png=b"\x89PNG", beat=1000.0)  # fmt: skip
    assert WordState.from_payload(state.payload()) == state
    assert WordState.from_payload(None) == WordState()
    assert state.checked(now=1050.0, stale_s=90).training
    stale = state.checked(now=1100.0, stale_s=90)
    assert stale.phase == pb.TEACHING_PHASE_FAILED and stale.message == STALE


class Taught:
    token_ids = (1936,)

    def digest(self) -> str:
        return "abc123"


def test_the_end_of_a_training_says_what_the_model_knows():
    running = WordState(phase=pb.TEACHING_PHASE_TRAINING, word="heart", step=40, total=40, seconds=61.0)
    taught = running.ended(Ended(Taught()), drawings=12)
    assert taught.phase == pb.TEACHING_PHASE_TAUGHT and taught.taught_digest == "abc123" and taught.token_ids == [1936]
    assert (
        taught.message
        == 'The class\'s model learned "heart" from 12 drawings in 40 steps (61 seconds). Try it in a prompt.'
    )
    again = dataclasses.replace(taught, phase=pb.TEACHING_PHASE_TRAINING, word="star", step=7)
    stopped = again.ended(Ended(None, stopped=True), drawings=12)
    assert stopped.phase == pb.TEACHING_PHASE_STOPPED and stopped.taught_word == "heart"
    assert stopped.message == 'The teacher stopped the training at step 7. It still knows "heart".'
    failed = running.ended(Ended(None, failed=True), drawings=12)
    assert failed.phase == pb.TEACHING_PHASE_FAILED and failed.message.endswith("It knows no new word.")


def test_a_sheet_puts_the_pictures_side_by_side():
    pictures = [np.full((64, 64, 3), value, dtype=np.uint8) for value in (0, 128, 200)]
    sheet = np.asarray(Image.open(io.BytesIO(samples_sheet(pictures))))
    assert sheet.shape == (64, 64 * 3 + 2 * 2, 3)
    assert (sheet[:, :64] == 0).all() and (sheet[:, 66:130] == 128).all() and (sheet[:, 64:66] == 255).all()
