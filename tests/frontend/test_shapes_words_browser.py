"""Lesson 2 and the Playground on Shapes in a real Chromium: the words it knows, what it can paint.

Lesson 2's similarity caption says what its chart's data shows (measured again here) and strikes out a
word Shapes never learned. In the Playground only sizes Shapes can paint are offered, words it never
learned are named before Generate, and the last picture stays on screen when the next one is refused
(the class's rate limit on). The stack is started as `make up` starts it (deploy/local-up.sh);
screenshots land in test-artifacts/e2e/.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from services.common.shapes_judge import judge
from tests.frontend.test_browser import ARTIFACTS, CHROMIUM_ARGS, Stack, final_pictures, running_stack
from tests.frontend.test_shapes_words_pages import similarity_of
from tests.support.frontend import wait_for_run


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    """One picture, then the class's rate limit refuses the next for two minutes."""
    folder = tmp_path_factory.mktemp("playground-stack")
    with running_stack(folder, CLASSROOM_RATE_LIMIT_PER_MINUTE="0.5", CLASSROOM_RATE_LIMIT_BURST="1") as running:
        yield running


@pytest.fixture(scope="module")
def page(stack) -> Iterator[Page]:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed for the browser test: run `make install`"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(120_000)
        page.on("pageerror", lambda error: errors.append(str(error)))
        yield page
        browser.close()
    assert errors == []


def settle(page: Page, name: str) -> None:
    wait_for_run(page)
    page.screenshot(path=str(ARTIFACTS / f"playground-{name}.png"), full_page=True)
    assert page.locator('[data-testid="stException"]').count() == 0


def type_prompt(page: Page, prompt: str) -> None:
    box = page.get_by_label("Prompt", exact=True)
    box.fill(prompt)
    box.press("Control+Enter")  # applies the box: the page runs again and checks its words
    settle(page, "typed")


def test_the_playground_fits_shapes(page: Page, stack: Stack):
    page.goto(stack.url)
    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Playground").click()
    expect(page.get_by_role("heading", name="Playground")).to_be_visible()
    settle(page, "opened")

    # Sizes: only up to 128 px, and a sentence says why nothing larger is offered.
    for side in ("Width", "Height"):
        page.get_by_test_id("stSelectbox").filter(has_text=side).click()
        options = page.get_by_role("option")
        expect(options.first).to_be_visible()
        assert options.all_inner_texts() == ["64", "128"], side
        page.keyboard.press("Escape")
    expect(page.get_by_text("Not offered: pictures larger than 128 × 128 pixels")).to_be_visible()

    # Words: "dog" is named before anything is generated.
    type_prompt(page, "a dog")
    expect(page.get_by_text("Shapes never learned “dog”: no training caption had it")).to_be_visible()
    assert page.get_by_role("button", name="Download the image (PNG)").count() == 0
    # Typed and sent at once, as most students do: the click carries the new words.
    page.get_by_label("Prompt", exact=True).fill("a yellow star at the top")
    page.get_by_role("button", name="Generate").click()
    expect(page.get_by_role("button", name="Download the image (PNG)")).to_be_visible()
    settle(page, "generated")
    assert judge(final_pictures(page)[0]).colour == "yellow"
    expect(page.get_by_text("Shapes never learned")).to_have_count(0)
    expect(page.get_by_text("Shapes learned every word of this prompt")).to_be_visible()

    # The next picture comes too soon: refused, and the yellow star stays, under the refusal.
    type_prompt(page, "a blue square on the right")
    page.get_by_role("button", name="Generate").click()
    refusal = page.get_by_text("You are making pictures faster than the class allows")
    expect(refusal).to_be_visible()
    settle(page, "refused")
    heading = page.get_by_role("heading", name="“a yellow star at the top”")
    expect(heading).to_be_visible()
    assert refusal.bounding_box()["y"] < heading.bounding_box()["y"]
    assert [judge(p).colour for p in final_pictures(page)] == ["yellow"]
    expect(page.get_by_role("button", name="Download the image (PNG)")).to_be_visible()


def test_lesson_2_says_what_its_chart_shows_and_strikes_out_dog(page: Page, stack: Stack):
    page.goto(stack.url)
    page.get_by_test_id("stSidebarNav").get_by_role("link", name="2. Words to numbers").click()
    expect(page.get_by_text("How alike the two prompts")).to_be_visible()
    settle(page, "lesson-2")
    similarity, ids, other_ids = similarity_of("a red circle on the left", "a blue circle on the left", stack.grpc)
    first = next(i for i, (a, b) in enumerate(zip(ids, other_ids, strict=True)) if a != b)
    after = similarity[first:]
    caption = page.get_by_text("Position 0 (start token)").inner_text()
    assert f"From position {first} on (the first different piece: “red” against “blue”)" in caption
    assert f"similarity from {after.min():.3f} to {after.max():.3f}" in caption
    assert f"lowest at position {first + int(after.argmin())}." in caption

    box = page.get_by_label("Prompt", exact=True)
    box.fill("a red dog on the left")
    box.press("Enter")
    expect(page.get_by_text("Shapes never learned “dog”")).to_be_visible()
    settle(page, "lesson-2-dog")
    struck = page.locator("span[style*='line-through']")
    assert struck.all_inner_texts() == ["dog"]
