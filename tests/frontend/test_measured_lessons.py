"""Lessons 7 and 8 on Shapes, in a real Chromium: each measured sentence against the run it describes.

The test computes every measure again, its own way, from the same pictures and trajectories
the page shows (the pictures fetched from the page; the attention maps read from the service),
and checks the sentence's numbers. The lessons' quick checks are checked for meaning: their
answers are true of the pictures and maps the class sees (services/common/shapes_judge.py).
"""

# ruff: noqa: F811 - `stack` is test_player's module fixture, imported here and asked for by its name

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator

import numpy as np
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from services.common.api import STUDENT_METADATA, pb
from services.common.codecs import tensor_from_proto
from services.common.shapes_judge import foreground, judge
from services.lessons.catalog import load_catalog
from tests.frontend.conftest import ROOT
from tests.frontend.test_browser import ARTIFACTS, CHROMIUM_ARGS, final_pictures
from tests.frontend.test_player import Stack, open_page, settle, stack  # noqa: F401
from tests.integration.helpers import Stream, collect
from tests.support.servers import client_for, stub_for

SHIPPED = load_catalog(ROOT / "services" / "lessons" / "catalog.yaml").for_model("shapes")


@pytest.fixture(scope="module")
def page(stack: Stack) -> Iterator[Page]:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed for the browser test: run `make install`"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        opened = browser.new_page(viewport={"width": 1400, "height": 1000})
        opened.set_default_timeout(300_000)
        yield opened
        browser.close()


def entries(stack: Stack, collection: str) -> list[pb.LessonEntry]:
    client = client_for(stack.grpc)
    try:
        return list(client.lessons(collection).entries)
    finally:
        client.close()


def generate(stack: Stack, request: pb.GenerateRequest) -> Stream:
    """The trajectory, from the stack's own service (its cache, when the page already had it made)."""
    channel, stub = stub_for(stack.grpc)
    try:
        return collect(stub.Generate(request, metadata=((STUDENT_METADATA, "measured-lessons-test"),)))
    finally:
        channel.close()


def question(collection: str, question_id: str):
    found = next(c for c in SHIPPED.collections if c.id == collection)
    return next(q for q in found.questions if q.id == question_id)


def main_text(page: Page) -> str:
    return " ".join(page.get_by_test_id("stMain").inner_text().split())


def either(steps: list[int]) -> str:
    return str(steps[0]) if len(steps) == 1 else ", ".join(str(k) for k in steps[:-1]) + f" or {steps[-1]}"


# -- lesson 8 -------------------------------------------------------------------------


def test_lesson_8_says_from_which_switch_each_property_stays_the_originals(page: Page, stack: Stack):
    listed = sorted(entries(stack, "branch-at-step"), key=lambda e: int(e.labels["branch_at_step"]))
    steps = [int(e.labels["branch_at_step"]) for e in listed]
    total = listed[0].request.num_inference_steps
    page.goto(stack.url)
    open_page(page, "When does the picture decide")
    expect(page.get_by_text("What each picture kept, measured")).to_be_visible()
    # The measured part's last line: on a loaded machine the page may still be drawing under the heading.
    expect(page.get_by_text("Distances are the mean difference of the pixels")).to_be_visible(timeout=120_000)
    settle(page, "measured-8-branch")
    text = main_text(page)
    assert "from step k + 1 on, the UNet reads the new prompt" in text
    assert "layout and colours are already settled" not in text

    pictures = dict(zip(steps, final_pictures(page)[: len(steps)], strict=True))  # the row of switched pictures
    seen = {k: judge(picture) for k, picture in pictures.items()}
    # Meaning: never switched, the original prompt's picture; switched at 0, the new prompt's own.
    assert (seen[total].colour, seen[total].shape, seen[total].position) == ("red", "circle", "on the left")
    assert (seen[0].colour, seen[0].shape, seen[0].position) == ("blue", "square", "on the right")

    switched = [k for k in steps if 0 < k < total]
    for name in ("colour", "shape", "position"):
        original, new = getattr(seen[total], name), getattr(seen[0], name)
        keeps = [k for k in switched if all(getattr(seen[j], name) == original for j in switched if j >= k)]
        if keeps:
            said = f"The {name} is the original's ({original}) when the switch comes at step {min(keeps)} of {total}"
        else:
            assert getattr(seen[switched[-1]], name) == new  # on this model: still the new prompt's at the latest
            said = f"The {name} still follows the new prompt ({new}) when the switch comes at step {switched[-1]}"
        assert said in text, (name, said)

    # In pixels: nearer the original or the new prompt's own, switch by switch.
    def distance(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.mean(np.abs(a.astype(float) - b.astype(float))))

    nearer_new = [k for k in switched if distance(pictures[k], pictures[0]) < distance(pictures[k], pictures[total])]
    nearer_old = [k for k in switched if k not in nearer_new]
    if nearer_new:
        assert f"switched at step {either(nearer_new)}, the picture is nearer the new prompt's own" in text
    if nearer_old:
        assert f"switched at step {either(nearer_old)}, it is nearer the original" in text


def test_lesson_8s_quick_check_has_one_right_picture(stack: Stack):
    """The shipped question's pictures differ as a student sees them, and the answer is the switched-at-40 one."""
    asked = question("branch-at-step", "switched-at-forty")
    listed = entries(stack, "branch-at-step")
    verdicts = []
    for choice in asked.choices:
        entry = next(e for e in listed if all(e.labels.get(k) == v for k, v in choice.labels.items()))
        seen = judge(generate(stack, entry.request).image)
        verdicts.append((int(entry.labels["branch_at_step"]), (seen.colour, seen.shape, seen.position)))
    assert len({v for _, v in verdicts}) == len(verdicts), verdicts  # no two pictures look the same
    step, looks = verdicts[asked.answer]
    assert f"step {step} of" in asked.question
    # Switched late: the new prompt's colour and shape, the original's position. The others are the two prompts' own.
    assert looks == ("blue", "square", "on the left"), verdicts
    assert {v for k, v in verdicts if k != step} == {
        ("red", "circle", "on the left"),
        ("blue", "square", "on the right"),
    }


# -- lesson 7 -------------------------------------------------------------------------


def attention_of(stream: Stream) -> tuple[np.ndarray, list[str], int]:
    """Maps [steps, kept tokens, h, w], the kept tokens' texts, and how many padding positions follow."""
    tokens = list(stream.header.prompt.tokens.tokens)
    kept = [t.text.strip() for t in tokens if t.kind != pb.TOKEN_KIND_PADDING]
    maps = np.stack([tensor_from_proto(f.cross_attention.maps).astype(np.float64) for f in stream.frames])
    return maps, kept, len(tokens) - len(kept)


def half_area(heat: np.ndarray) -> float:
    """The fewest cells (largest first) that hold half the map, as a share of all cells."""
    cells = np.sort(heat.ravel())[::-1]
    needed = next(n for n in range(1, cells.size + 1) if cells[:n].sum() >= cells.sum() / 2)
    return needed / cells.size


def check_word(text: str, maps: np.ndarray, kept: list[str], image: np.ndarray, word: str) -> None:
    index = kept.index(word)
    steps = maps.shape[0]
    first, last = half_area(maps[0, index]), half_area(maps[-1, index])
    assert (
        f"half of «{word}»'s map lies on {first:.0%} of the picture at step 1 and on {last:.0%} at step {steps}"
    ) in text
    summed = maps[:, index].sum(axis=0)
    spread = np.repeat(np.repeat(summed, image.shape[0] // summed.shape[0], 0), image.shape[1] // summed.shape[1], 1)
    mask = foreground(image)
    on, share = spread[mask].sum() / spread.sum(), mask.mean()
    assert (
        f"«{word}» puts {on:.0%} of its map (summed over the steps) on the shape's pixels, which are {share:.0%} "
        f"of the picture: {on / share:.1f} times their share."
    ) in text


def test_lesson_7_says_where_the_attention_goes_on_this_run(page: Page, stack: Stack):
    example = entries(stack, "attention-maps")[0]  # the page opens on the first example
    page.goto(stack.url)
    open_page(page, "Which word paints where")
    expect(page.get_by_text("Who gets the attention")).to_be_visible()
    settle(page, "measured-7-attention")
    text = main_text(page)

    stream = generate(stack, example.request)  # the same trajectory: the cache's, made when the page opened
    maps, kept, padding = attention_of(stream)
    # The page's picture is this run's (within the image encoding's rounding, as the browser receives it).
    assert np.abs(final_pictures(page)[0].astype(float) - stream.image).mean() < 3
    mean = maps.mean(axis=(0, 2, 3))
    start, words, end = mean[0], mean[1:-1].sum(), mean[-1]
    rest = 1 - mean.sum()
    assert (
        f"the start token gets {start:.0%} of the attention, the prompt's {len(kept) - 2} pieces {words:.0%} "
        f"together, the end token {end:.0%}, and the {padding} padding positions after it {rest:.0%}"
    ) in text
    assert "soaks up" not in text and "as DAAM does" not in text
    grids = [(r.height, r.width, r.layers) for r in stream.frames[0].cross_attention.resolutions]
    layers = " and ".join(f"{h} × {w} ({n} layers)" for h, w, n in grids)
    assert f"reads the text at grids of {layers}" in text
    assert f"averaged over all {sum(n for _, _, n in grids)} cross-attention layers" in text

    # When every two pieces' maps correlate past 0.9, the page says so plainly, with the lowest correlation.
    summed = maps.sum(axis=0)
    pieces = range(1, len(kept) - 1)
    least = min(float(np.corrcoef(summed[i].ravel(), summed[j].ravel())[0, 1]) for i in pieces for j in pieces if i < j)
    said = f"every piece's map is nearly the same pattern (any two correlate at {least:.2f} or more)" in text
    assert said == (least >= 0.9), (least, said)
    check_word(text, maps, kept, stream.image, kept[-2])  # the page opens on the last piece
    page.get_by_test_id("stButtonGroup").get_by_text("red", exact=True).click()  # the pill "red"
    expect(page.get_by_text("half of «red»'s map")).to_be_visible()
    settle(page, "measured-7-attention-red")
    check_word(main_text(page), maps, kept, stream.image, "red")


def test_lesson_7s_quick_check_is_true_of_every_example(stack: Stack):
    """The Shapes question's answer (the padding) holds on every example the lesson offers."""
    asked = question("attention-maps", "most-attention")
    assert asked.choices[asked.answer].text == "the padding after the end token"
    for entry in entries(stack, "attention-maps"):
        maps, _, _ = attention_of(generate(stack, entry.request))
        mean = maps.mean(axis=(0, 2, 3))
        padding = 1 - mean.sum()
        assert padding > max(mean[0], mean[1:-1].sum(), mean[-1]), (entry.id, padding, mean)


def test_the_catalogs_quick_checks_are_labelled_per_model():
    """The Stable Diffusion question about the start token says it is reported, and by whom."""
    sd = load_catalog(ROOT / "services" / "lessons" / "catalog.yaml").for_model("stable-diffusion")
    attention = next(c for c in sd.collections if c.id == "attention-maps")
    start = next(q for q in attention.questions if q.id == "start-token")
    assert re.search(r"Stable Diffusion is reported .*\(Attend-and-Excite, Chefer et al\. 2023\)", start.question)
