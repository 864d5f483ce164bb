"""At 1366 by 768 (a school Chromebook's screen), no lesson page needs horizontal scrolling.

The stack as `make up` starts it (Shapes). One Chromium page 1366 pixels wide walks the
menu: the welcome page, the ten lessons and the Playground, each opened by a click in
the sidebar and waited for until its script has finished. On each, neither the document,
the app's view nor its main area is wider than its box, and the trajectory player, where
the page draws one, fits in its own frame.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.frontend.test_browser import Stack, running_stack
from tests.support.frontend import launched_chromium

WAIT_MS = 120_000  # cold lessons compute on a shared CPU
PAGES = [
    "Welcome", "1. The whole pipeline", "2. Words to numbers", "3. From noise to image", "4. Guidance",
    "5. Change one word", "6. Seeds and schedulers", "7. Which word paints where",
    "8. When does the picture decide?", "9. What it learned from", "10. Teach it a new word", "Playground",
]  # fmt: skip
# What scrolls sideways: each a name, for the failure's message.
WIDE = """
() => {
  const wide = el => el && el.scrollWidth > el.clientWidth + 1;
  const found = [];
  if (document.scrollingElement.scrollWidth > window.innerWidth) found.push("the document");
  if (wide(document.querySelector('[data-testid="stAppViewContainer"]'))) found.push("the app's view");
  if (wide(document.querySelector('[data-testid="stMain"]'))) found.push("the main area");
  for (const frame of document.querySelectorAll('iframe[title="frontend.player.trajectory_player"]')) {
    try {
      const inner = frame.contentDocument.scrollingElement;
      if (inner.scrollWidth > inner.clientWidth + 1) found.push("the player's frame");
    } catch (e) {}
  }
  return found;
}
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("layout-stack")) as running:
        yield running


@pytest.fixture(scope="module")
def browser(stack: Stack) -> Iterator[Browser]:
    with launched_chromium() as browser:
        yield browser


def settle(page: Page) -> None:
    page.wait_for_timeout(300)
    expect(page.get_by_test_id("stApp")).to_have_attribute("data-test-script-state", "notRunning", timeout=WAIT_MS)
    expect(page.locator('[data-testid="stStatusWidget"]')).to_have_count(0, timeout=WAIT_MS)


def test_no_lesson_page_scrolls_sideways_at_1366_pixels(browser: Browser, stack: Stack):
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(stack.url)
    settle(page)
    wide: dict[str, list[str]] = {}
    for title in PAGES:
        page.get_by_test_id("stSidebar").get_by_role("link", name=title, exact=True).click()
        expect(page).to_have_title(f"{title} · Diffusion Classroom", timeout=WAIT_MS)
        settle(page)
        found = page.evaluate(WIDE)
        if found:
            wide[title] = found
            page.screenshot(path=f"/tmp/layout-1366-{PAGES.index(title):02d}.png", full_page=True)
    context.close()
    assert wide == {}, f"scrolls sideways at 1366 px: {wide}"
