"""Lesson 6 in a real Chromium, on Shapes, with a class's rate limit on: what it says is what its pictures show.

The measured sentence under the chart names the scheduler whose picture changed most
between 25 and 50 steps, with the number the test computes again from the same
pictures through the API; the Shapes quick check's answer is that scheduler; the
schedulers Shapes leaves out are not shown; and a new seed's whole grid arrives,
though the student's own limit is 3 pictures. Screenshots land in test-artifacts/e2e-lesson6/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np
import pytest
import yaml
from playwright.sync_api import Page, expect

from services.common.codecs import decode_image
from services.common.shapes_judge import judge
from services.common.shapes_world import PALETTE
from services.lessons.catalog import DEFAULT_CATALOG
from tests.frontend.conftest import ROOT
from tests.frontend.test_browser import Stack, chromium_page, running_stack
from tests.integration.helpers import collect
from tests.support.frontend import wait_for_run
from tests.support.servers import client_for

ARTIFACTS = ROOT / "test-artifacts" / "e2e-lesson6"
TITLE = "6. Seeds and schedulers"
expect.set_options(timeout=240_000)  # the grid is computed as the lesson opens, on a CPU


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    limit = {"CLASSROOM_RATE_LIMIT_PER_MINUTE": "1", "CLASSROOM_RATE_LIMIT_BURST": "3"}  # a class's limit
    with running_stack(tmp_path_factory.mktemp("stack"), **limit) as running:
        yield running


@pytest.fixture(scope="module")
def page(stack) -> Iterator[Page]:
    with chromium_page(ARTIFACTS, timeout_ms=240_000) as page:
        yield page


def changes_from_25_to_50(address: str) -> dict[str, float]:
    """Each scheduler's mean pixel change between its 25- and 50-step pictures, from the lesson's own entries."""
    client = client_for(address)
    try:
        names = {s.name: s.display_name for s in client.model_info().schedulers}
        pictures: dict[tuple[str, str], np.ndarray] = {}
        for entry in client.lessons("scheduler-comparison").entries:
            if entry.labels["steps"] in ("25", "50") and entry.labels["seed"] == "1":
                stream = collect(client.generate(entry.request, "lesson6-test", lesson_entry=entry.id))
                image = decode_image(stream.final.image).astype(np.float32)
                pictures[(entry.labels["scheduler"], entry.labels["steps"])] = image
    finally:
        client.close()
    schedulers = dict.fromkeys(s for s, _ in pictures)
    return {names[s]: float(np.abs(pictures[(s, "50")] - pictures[(s, "25")]).mean()) for s in schedulers}


def colour_right(address: str) -> tuple[int, int]:
    """Of seed 1's pictures, how many the pixel judge sees in the prompt's colour, and how many there are."""
    client = client_for(address)
    try:
        entries = [e for e in client.lessons("scheduler-comparison").entries if e.labels["seed"] == "1"]
        colour = next(word for word in entries[0].request.prompt.split() if word in PALETTE)
        right = 0
        for entry in entries:
            stream = collect(client.generate(entry.request, "lesson6-test", lesson_entry=entry.id))
            right += judge(decode_image(stream.final.image)).colour == colour
    finally:
        client.close()
    return right, len(entries)


def shapes_quick_check() -> tuple[str, str]:
    """The Shapes scheduler-comparison quick check: its question and its right answer's text."""
    catalog = yaml.safe_load(DEFAULT_CATALOG.read_text())
    (collection,) = [
        c for c in catalog["collections"] if c["id"] == "scheduler-comparison" and c.get("model") == "shapes"
    ]
    (question,) = collection["questions"]
    return question["question"], question["choices"][question["answer"]]["text"]


def test_lesson_6_says_what_its_pictures_show_and_a_new_seed_shows_the_whole_grid(page: Page, stack: Stack):
    page.goto(stack.url)
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=TITLE).click()
    main = page.get_by_test_id("stMain")
    expect(main.get_by_text("On these pictures,").first).to_be_visible()
    wait_for_run(page)
    page.screenshot(path=str(ARTIFACTS / "seed-1.png"), full_page=True)

    changes = changes_from_25_to_50(stack.grpc)
    assert set(changes) == {"DDIM", "Euler", "Euler Ancestral", "DPM-Solver++"}  # LMS and PNDM not offered
    most = max(changes, key=changes.get)
    expect(
        main.get_by_text(f"On these pictures, {most} changed most ({changes[most]:.1f} levels per pixel)")
    ).to_be_visible()
    right, total = colour_right(stack.grpc)
    expect(
        main.get_by_text(f"The pixel judge sees the prompt's colour (blue) in {right} of {total} pictures")
    ).to_be_visible()
    for left_out in ("LMS", "PNDM"):
        expect(main.locator("strong").filter(has_text=re.compile(f"^{left_out}$"))).to_have_count(0)
    expect(main.get_by_text("LMS and PNDM are not offered on Shapes")).to_be_visible()

    question, answer = shapes_quick_check()
    assert "between 25 and 50 steps" in question  # what the chart under the pictures measures
    assert answer == most, (answer, changes)

    # A seed nobody computed: 4 schedulers x 3 step counts, though this student's own limit is 3.
    seed = main.get_by_role("spinbutton", name="Seed", exact=True)
    seed.fill("77")
    seed.press("Enter")
    expect(main.get_by_text("Seed 77 is not precomputed")).to_be_visible()
    pictures = main.locator('[data-testid="stImage"]').filter(has_text=re.compile(r"^\d+ steps$"))
    expect(pictures).to_have_count(12)
    wait_for_run(page)
    page.screenshot(path=str(ARTIFACTS / "seed-77.png"), full_page=True)
    expect(main.get_by_text("faster than the class allows")).to_have_count(0)
    exceptions = page.locator('[data-testid="stException"]')
    assert exceptions.count() == 0, exceptions.first.inner_text()
