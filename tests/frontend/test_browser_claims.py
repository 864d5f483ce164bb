"""In a real Chromium, on Shapes: each measured sentence of lessons 1, 3, 4, 5, 9 and the model page, as read.

The stack starts as `make up` starts it; the test fetches the same trajectories through the
API, computes each measure again (tests/frontend/test_measured_claims.py says how) and
finds the page's sentence on the screen. Screenshots land in test-artifacts/e2e-claims/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from frontend.material import claims
from tests.frontend.conftest import ROOT
from tests.frontend.test_browser import Stack, chromium_page, running_stack
from tests.frontend.test_measured_claims import (
    expected_lesson_3,
    expected_lesson_4,
    expected_lesson_5,
    model_page_schedule,
    shapes_run,
    shapes_runs,
)
from tests.support.servers import client_for

ARTIFACTS = ROOT / "test-artifacts" / "e2e-claims"
expect.set_options(timeout=120_000)  # a lesson's examples are computed as it opens, on a CPU
EXAMPLE = {"pair": "colour", "side": "a", "seed": "1"}  # what lessons 3 and 4 open with, and lesson 5's first pair


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("stack")) as running:
        yield running


@pytest.fixture(scope="module")
def page(stack) -> Iterator[Page]:
    with chromium_page(ARTIFACTS) as page:
        yield page


def open_lesson(page: Page, title: str, last: str) -> None:
    """Click a lesson in the menu and wait until it has run to `last` (a text drawn at its end)."""
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=title).click()
    expect(page.get_by_role("heading", name=title)).to_be_visible()
    expect(page.get_by_text(last).first).to_be_visible()
    page.wait_for_timeout(300)
    expect(page.locator('[data-testid="stStatusWidget"]')).to_have_count(0)
    page.screenshot(path=str(ARTIFACTS / f"{re.sub(r'[^a-z0-9]+', '-', title.lower())}.png"), full_page=True)
    exceptions = page.locator('[data-testid="stException"]')
    assert exceptions.count() == 0, exceptions.first.inner_text()


def on_screen(page: Page, sentence: str, name: str = "") -> None:
    """The sentence is on the page, seen (scrolled to, and photographed as `name` when given)."""
    found = page.get_by_test_id("stMain").get_by_text(sentence).first
    expect(found).to_be_visible()
    if name:
        found.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def test_a_student_reads_only_what_the_runs_show(page: Page, stack: Stack):
    page.goto(stack.url)
    expect(page.get_by_role("heading", name="Diffusion Classroom")).to_be_visible()
    links = page.get_by_test_id("stMain").get_by_role("link")
    expect(links.filter(has_text="8. When does the picture decide?")).to_have_count(1)
    titles = [text.split(":")[0].strip() for text in links.all_inner_texts()]
    numbered = [title for title in titles if re.match(r"\d+\. ", title)]
    assert len(numbered) == len(set(numbered)) == 10, titles  # each lesson once

    client = client_for(stack.grpc)
    info = client.model_info()
    client.close()

    open_lesson(page, "1. The whole pipeline", "What flows between the stages")
    on_screen(page, "so two 77×64 matrices reach the UNet at every step of the loop")

    open_lesson(page, "3. From noise to image", "the VAE's decode of the last latent: the real image")
    run = shapes_run(stack.grpc, **EXAMPLE, guidance_scale="7")
    sentences, _ = expected_lesson_3(run, info)
    for number, sentence in enumerate(sentences):
        on_screen(page, sentence, f"3-from-noise-to-image-measured-{number}")

    open_lesson(page, "4. Guidance", "Try it yourself")
    scales = ("0", "7", "20")
    runs = dict(zip(scales, shapes_runs(stack.grpc, *({**EXAMPLE, "guidance_scale": g} for g in scales)), strict=True))
    on_screen(page, expected_lesson_4(runs), "4-guidance-measured")
    # The row of scales: 64 px pictures drawn large enough to see (they were about 64 px on the screen).
    row = page.get_by_test_id("stMain").locator('[data-testid="stImage"]').filter(has_text=re.compile(r"^g = \d+$"))
    expect(row).to_have_count(4)
    for picture in row.locator("img").all():
        assert picture.bounding_box()["width"] >= 150, picture.bounding_box()

    open_lesson(page, "5. Change one word", "Both paths in two dimensions")
    a, b = shapes_runs(stack.grpc, *({"pair": "colour", "side": s, "seed": "1", "guidance_scale": "7"} for s in "ab"))
    sentence, distances = expected_lesson_5(a, b, info)
    on_screen(page, sentence, "5-change-one-word-measured")
    # Measured on x_t, the paths part later than the loop's x (x = x_t·√(1+σ²)) would make them seem to.
    carried = claims.rms_distances(a.latents(), b.latents())
    assert claims.half_way_step(distances) > claims.half_way_step(carried)

    open_lesson(page, "The model", "Its numbers")
    on_screen(page, model_page_schedule().split(". So ")[-1])  # "Euler at 50 steps starts here at ..."


def test_lesson_9_shows_its_training_pictures_dog_and_a_copy_check(page: Page, stack: Stack):
    """What the service says (its training pictures, dog's vector, the nearest training picture), read on screen."""
    from services.common.api import pb
    from tests.integration.helpers import collect

    client = client_for(stack.grpc)
    try:
        first = client.training_samples(0, 12).pictures[0]
        dog = next(t for t in client.tokenize("a dog").tokens if t.text == "dog")
        mine = collect(client.generate(pb.GenerateRequest(prompt="a red circle on the left", seed=3), "e2e-lesson-9"))
        near = client.nearest_training(mine.status.trajectory_key, 4, "e2e-lesson-9").neighbours[0]
    finally:
        client.close()
    assert near.picture.caption == "a red circle on the left"  # what the page should then say

    open_lesson(page, "9. What it learned from", "Questions to argue about")
    on_screen(page, f"#0: {first.caption}")
    on_screen(page, "The judge sees a purple triangle on the left.", "9-never-seen")
    on_screen(page, f"its vector's length is {dog.input_norm:.3f}, shorter than any of them", "9-dog")
    on_screen(page, "Carlini et al. 2023")

    page.get_by_role("button", name="Paint and compare").click()
    said = f"The nearest, “{near.picture.caption}”, differs from yours by a typical (root-mean-square) "
    on_screen(page, said + f"{near.pixel_distance:.1f} levels a pixel", "9-copy")
    exceptions = page.locator('[data-testid="stException"]')
    assert exceptions.count() == 0, exceptions.first.inner_text()
