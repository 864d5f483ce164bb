"""Signing in to a class in a real Chromium: the first page every student sees loads nothing from elsewhere."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from tests.frontend.test_browser import (
    ARTIFACTS,
    CHROMIUM_ARGS,
    Seen,
    Stack,
    record_console,
    running_stack,
)
from tests.support.frontend import record_hosts

expect.set_options(timeout=120_000)
CLASS_CODE = "blue-7"


@pytest.fixture(scope="module")
def class_stack(tmp_path_factory) -> Iterator[Stack]:
    """The stack with a class code: students sign in before the lessons open."""
    with running_stack(tmp_path_factory.mktemp("class-stack"), CLASSROOM_CLASS_CODE=CLASS_CODE) as running:
        yield running


@pytest.fixture
def watched(class_stack) -> Iterator[tuple[Page, Seen]]:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed for the browser test: run `make install`"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    seen = Seen()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("console", lambda message: record_console(seen, message.type, message.text, message.location))
        page.on("pageerror", lambda error: seen.errors.append(f"uncaught: {error}"))
        record_hosts(page, seen.hosts)
        yield page, seen
        browser.close()


def test_a_student_signs_in_and_nothing_comes_from_elsewhere(watched, class_stack: Stack):
    page, seen = watched
    page.goto(class_stack.url)
    expect(page.get_by_text("Type the class code your teacher gave you")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "signin-0.png"))
    page.get_by_label("Class code").fill(CLASS_CODE)
    page.get_by_label("Your name").fill("Zoë")
    page.get_by_role("button", name="Start").click()
    expect(page.get_by_text("The image server is running")).to_be_visible()
    page.wait_for_timeout(500)
    page.screenshot(path=str(ARTIFACTS / "signin-1-welcome.png"))
    assert seen.errors == []
    assert seen.hosts == {urlsplit(class_stack.url).netloc}
