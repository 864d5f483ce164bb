"""In a real Chromium: a student picks Español in the sidebar, the welcome page speaks it, and a reload keeps it.

A student who reads French sees the player's noise levels written the French way (the noise level sigma as 0,570).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from tests.frontend.test_browser import ARTIFACTS, CHROMIUM_ARGS, Stack, running_stack
from tests.frontend.test_player import PLAYER
from tests.support.accessibility import settle

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
    settle(page)  # the first run over: a pick made while it runs was once never heard (radio checked, page English)
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


def test_the_player_writes_its_noise_levels_the_french_way(page: Page, stack: Stack):
    page.goto(stack.url)
    expect(page.get_by_text("with the real model's numbers, not an illustration")).to_be_visible()
    settle(page)
    page.get_by_test_id("stSidebar").get_by_text("Français", exact=True).click()
    page.get_by_test_id("stSidebarNavItems").get_by_role("link", name=re.compile("Du bruit à l'image")).click()
    expect(page.locator(PLAYER)).to_be_visible()
    frame = page.locator(PLAYER).element_handle().content_frame()
    assert frame is not None
    where = frame.locator("#where")
    expect(where).to_contain_text(re.compile(r"σ = \d+,\d{3}"))  # a decimal comma, three decimals
    assert not re.search(r"σ = \d+\.\d", where.inner_text()), where.inner_text()
    page.screenshot(path=str(ARTIFACTS / "language-fr-player.png"))
