"""Teaching Shapes a new word (lesson 10): drawings, pictures, word checks, the taught word, training."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from services.common.shapes_judge import judge
from services.common.shapes_world import PALETTE, POSITIONS
from services.inference.diffusion.recipe import one_cycle
from services.inference.diffusion.teach import (
    MAX_STEPS,
    ROWS,
    Drawing,
    TaughtWord,
    TeachConfig,
    apply,
    check_word,
    silhouette,
    teach,
)
from services.inference.diffusion.teach_data import (
    known_silhouettes,
    mean_silhouette,
    silhouette_iou,
    training_pictures,
)
from services.shapes.evaluate import load
from tests.support.drawings import class_drawings, heart_point

# A short run: few pictures, small batches, samples only at the end.
QUICK = TeachConfig(pictures=48, prior_pictures=48, batch=16, sample_every=0, sample_colours=("red", "blue"))


@pytest.fixture(scope="module")
def shapes():
    """Shapes, trained on here with one torch thread; the count is put back after the module.

    Tests that compare with diffusers' pipeline bit for bit need the same count on both sides.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def taught(shapes) -> TaughtWord:
    return teach(shapes, class_drawings(4), "heart", steps=2, seed=0, on_progress=lambda _: None,
                 should_stop=lambda: False, config=QUICK)  # fmt: skip


# -- drawings ----------------------------------------------------------------------


def test_an_outline_with_a_gap_becomes_the_filled_shape_cropped_and_centred():
    canvas = Image.new("1", (256, 256), 0)
    points = [(60 + 3 * x, 150 + 3 * y) for x, y in (heart_point(0.2 + 6.0 * i / 99) for i in range(100))]
    ImageDraw.Draw(canvas).line(points, fill=1, width=5)  # stops 0.08 of a turn short: a gap
    truth = Image.new("1", (256, 256), 0)
    ImageDraw.Draw(truth).polygon([(60 + 3 * x, 150 + 3 * y) for x, y in map(heart_point, np.linspace(0, 6.28, 200))],
                                  fill=1)  # fmt: skip
    mask = silhouette(Drawing(np.asarray(canvas, dtype=bool)))
    assert mask.shape == (64, 64) and mask.dtype == bool
    assert mask[32, 32] and mask[40, 32]  # the inside is filled, not just the ink
    assert mask[:, 0].any() and mask[:, -1].any()  # cropped: the heart is wider than tall and spans the width
    assert silhouette_iou(mask, silhouette(Drawing(np.asarray(truth, dtype=bool)))) > 0.9


def test_a_heart_looks_like_the_drawings_and_not_like_the_shapes_shapes_knows():
    drawings = class_drawings()
    mean = mean_silhouette(drawings)
    for drawing in drawings:
        own = silhouette_iou(silhouette(drawing), mean)
        assert own > 0.8
        assert all(own > silhouette_iou(silhouette(drawing), known) for known in known_silhouettes().values())


def test_an_empty_drawing_is_refused_in_words():
    with pytest.raises(ValueError, match="empty"):
        silhouette(Drawing(np.zeros((256, 256), dtype=bool)))


def test_training_pictures_paint_each_caption_colour_and_place():
    pictures, captions = training_pictures(class_drawings(3), "heart", random.Random(1), 200)
    assert pictures.shape == (200, 64, 64, 3) and pictures.dtype == np.uint8
    assert all(c.split()[0] in ("a", "an") and "heart" in c.split() for c in captions)
    for picture, caption in zip(pictures, captions, strict=True):
        verdict = judge(picture)
        assert verdict.colour in caption.split()  # the caption's colour is the colour painted
        place = next((p for p in POSITIONS if caption.endswith(p)), None)
        if place is not None:
            assert verdict.position == place
    red_left = [p for p, c in zip(pictures, captions, strict=True) if c.endswith("red heart on the left")]
    assert red_left
    for picture in red_left:
        ys, xs = np.nonzero(np.linalg.norm(picture.astype(float) - PALETTE["red"], axis=-1) < 40)
        assert len(xs) > 20 and xs.max() < 32 and 16 < ys.mean() < 48  # red pixels, on the left, half-way down


# -- the word ------------------------------------------------------------------------


def test_a_new_word_gives_its_token_ids(shapes):
    assert check_word(shapes, "heart") == shapes.tokenizer("heart", add_special_tokens=False).input_ids


@pytest.mark.parametrize(
    ("word", "says"),
    [
        ("", "Type the new word"),
        ("   ", "Type the new word"),
        ("a" * 25, "too long"),
        ("he4rt", "letters a to z"),
        ("two words", "letters a to z"),
        ("red", "already knows"),
        ("bluestar", "shares the piece 'star'"),
        ("supercalifragilistic", "pieces"),
    ],
)
def test_words_that_cannot_be_taught_are_refused_in_words(shapes, word, says):
    with pytest.raises(ValueError, match=says):
        check_word(shapes, word)


# -- the taught word ----------------------------------------------------------------


def test_a_taught_word_survives_bytes_and_its_digest_is_its_content(taught):
    blob = taught.to_bytes()
    assert blob == taught.to_bytes()  # deterministic
    back = TaughtWord.from_bytes(blob)
    assert (back.word, back.token_ids, back.steps) == (taught.word, taught.token_ids, taught.steps)
    assert back.tensors.keys() == taught.tensors.keys()
    assert all(torch.equal(back.tensors[k], taught.tensors[k]) for k in taught.tensors)
    assert back.digest() == taught.digest() and len(taught.digest()) == 16
    changed = TaughtWord(taught.word, taught.token_ids, {k: v + (k == ROWS) for k, v in taught.tensors.items()})
    assert changed.digest() != taught.digest()
    with pytest.raises(ValueError):
        TaughtWord.from_bytes(b"not a taught word")


def test_apply_changes_the_taught_tensors_and_nothing_else(shapes, taught):
    before_text = {k: v.clone() for k, v in shapes.text_encoder.state_dict().items()}
    before_unet = {k: v.clone() for k, v in shapes.unet.state_dict().items()}
    copy = load()
    apply(copy, taught)
    # Teaching left the model it was given alone.
    assert all(torch.equal(v, shapes.text_encoder.state_dict()[k]) for k, v in before_text.items())
    assert all(torch.equal(v, shapes.unet.state_dict()[k]) for k, v in before_unet.items())
    taught_unet = {k.removeprefix("unet.") for k in taught.tensors if k != ROWS}
    assert taught_unet and all(".attn2.to_k." in k or ".attn2.to_v." in k for k in taught_unet)
    for name, value in copy.unet.state_dict().items():
        assert torch.equal(value, before_unet[name]) == (name not in taught_unet), name
    table = next(k for k in before_text if k.endswith("token_embedding.weight"))
    rows = copy.text_encoder.state_dict()[table]
    changed = (rows != before_text[table]).any(dim=1).nonzero().flatten().tolist()
    assert changed == taught.token_ids
    others = {k: v for k, v in copy.text_encoder.state_dict().items() if k != table}
    assert all(torch.equal(v, before_text[k]) for k, v in others.items())
    assert copy.learned(taught.token_ids) == [True]  # the copy now counts the word as learned


def test_teaching_is_bounded_and_says_so_in_words(shapes):
    with pytest.raises(ValueError, match="too many"):
        teach(shapes, class_drawings(1) * 33, "heart", steps=10, seed=0, on_progress=print, should_stop=lambda: False)
    with pytest.raises(ValueError, match="no drawings"):
        teach(shapes, [], "heart", steps=10, seed=0, on_progress=print, should_stop=lambda: False)
    with pytest.raises(ValueError, match="between 1 and"):
        teach(shapes, class_drawings(1), "heart", steps=0, seed=0, on_progress=print, should_stop=lambda: False)


def test_teaching_stops_within_one_step_when_asked(shapes):
    seen: list[int] = []
    word = teach(shapes, class_drawings(2), "heart", steps=50, seed=0, on_progress=lambda p: seen.append(p.step),
                 should_stop=lambda: len(seen) >= 1, config=QUICK)  # fmt: skip
    assert seen == [1] and word.steps == 1
    word = teach(shapes, class_drawings(2), "heart", steps=50, seed=0, on_progress=lambda p: seen.append(p.step),
                 should_stop=lambda: True, config=QUICK)  # fmt: skip
    assert word.steps == 0


def test_progress_reports_every_step_with_a_falling_loss_and_pictures_at_the_end(shapes):
    reports = []
    teach(shapes, class_drawings(4), "heart", steps=24, seed=0, on_progress=reports.append,
          should_stop=lambda: False, config=QUICK)  # fmt: skip
    assert [r.step for r in reports] == list(range(1, 25)) and {r.total for r in reports} == {24}
    losses = [r.loss for r in reports]
    assert np.mean(losses[-8:]) < np.mean(losses[:8])  # it learns the new word from the start
    # Its two halves: the drawings' loss is what falls; the known shapes' stays where the model had it.
    new, known = [r.new_word_loss for r in reports], [r.known_loss for r in reports]
    assert np.mean(new[-8:]) < 0.8 * np.mean(new[:8])
    assert np.mean(known[-8:]) < 1.25 * np.mean(known[:8])
    assert np.mean(new[:8]) > np.mean(known[:8])  # a word it never saw starts far worse than the shapes it knew
    assert all(r.samples is None for r in reports[:-1])
    samples = reports[-1].samples
    assert samples is not None and len(samples) == 2
    assert all(s.shape == (64, 64, 3) and s.dtype == np.uint8 for s in samples)
    assert [r.seconds for r in reports] == sorted(r.seconds for r in reports)


def test_every_step_count_a_teacher_may_ask_for_has_a_learning_rate_schedule():
    """20 steps at a 5 % warm-up is a warm-up of exactly one step, which OneCycleLR divided by (zero): teaching failed.

    Every count from 1 to MAX_STEPS builds the schedule the training uses; a few are run to
    their end, which is a rate near nothing. Counts whose warm-up is not exactly one step keep
    their schedule as it was (the same rates as OneCycleLR's own, step by step).
    """
    config = TeachConfig()

    def optimiser() -> torch.optim.Optimizer:
        return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=config.unet_lr)

    def rates(schedule: torch.optim.lr_scheduler.LRScheduler, steps: int) -> list[float]:
        seen = [schedule.get_last_lr()[0]]
        for _ in range(steps - 1):
            schedule.optimizer.step()
            schedule.step()
            seen.append(schedule.get_last_lr()[0])
        return seen

    for steps in range(1, MAX_STEPS + 1):
        schedule = one_cycle(optimiser(), config.unet_lr, steps, config.warmup)
        if steps in (1, 19, 20, 21, 250):
            seen = rates(schedule, max(2, steps))
            assert max(seen) <= config.unet_lr * (1 + 1e-9) and seen[-1] < config.unet_lr / 100, steps
            if steps != 20:
                own = torch.optim.lr_scheduler.OneCycleLR(
                    optimiser(), config.unet_lr, total_steps=max(2, steps), pct_start=config.warmup
                )
                assert seen == rates(own, max(2, steps)), steps
