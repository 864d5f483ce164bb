"""In a real Chromium: a student picks Español in the sidebar, the welcome page speaks it, and a reload keeps it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from tests.frontend.test_browser import ARTIFACTS, CHROMIUM_ARGS, Stack, running_stack

expect.set_options(timeout=120_000)


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("languages-stack")) as running:
        yield running


@pytest.fixture
def page(stack) -> Iterator[Page]:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed for the browser test: run `make install`"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield browser.new_page(viewport={"width": 1400, "height": 1000})
        browser.close()


def test_picking_espanol_speaks_spanish_and_a_reload_keeps_it(page: Page, stack: Stack):
    page.goto(stack.url)
    expect(page.get_by_text("with the real model's numbers, not an illustration")).to_be_visible()
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_text("Español", exact=True).click()
    expect(page.get_by_text("con los números del modelo real, no con una ilustración")).to_be_visible()
    expect(sidebar.get_by_text("Idioma · Language")).to_be_visible()
    expect(page.get_by_text("Laboratorio").first).to_be_visible()  # the menu speaks it too
    assert "lang=es" in page.url
    page.screenshot(path=str(ARTIFACTS / "language-es.png"))
    page.reload()
    expect(page.get_by_text("con los números del modelo real, no con una ilustración")).to_be_visible()
    assert page.get_by_text("with the real model's numbers").count() == 0
