"""Lessons 7 and 8 in Spanish, in a real Chromium, on Shapes: the measured parts that only Shapes shows speak it too.

On Shapes lesson 7 measures each word's map against the shape the pixel judge finds, and lesson 8
names what the judge sees in each picture: sentences the tiny model's AppTest runs never reach.
"""

# ruff: noqa: F811 - `stack` is test_player's module fixture, imported here and asked for by its name

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from tests.frontend.test_browser import ARTIFACTS, CHROMIUM_ARGS
from tests.frontend.test_player import Stack, open_page, settle, stack  # noqa: F401


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


def main_text(page: Page) -> str:
    return " ".join(page.get_by_test_id("stMain").inner_text().split())


def open_in_spanish(page: Page, stack: Stack, title: str) -> None:
    """The welcome page by a link that asks for Spanish, read to the end, then the lesson from the sidebar.

    The welcome page's first run is let finish before the student moves on: a move during it can leave the
    sidebar's picker on English while the page speaks Spanish (the next form sent would switch to English).
    """
    page.goto(f"{stack.url}/?lang=es")
    expect(page.get_by_text("con los números del modelo real, no con una ilustración")).to_be_visible()
    settle(page, "lessons-7-8-es-welcome")
    open_page(page, title)


def test_lesson_7_on_shapes_speaks_spanish(page: Page, stack: Stack):
    open_in_spanish(page, stack, "7. Qué palabra pinta dónde")
    expect(page.get_by_text("Quién recibe la atención")).to_be_visible()
    settle(page, "lesson-7-es")
    text = main_text(page)
    assert "La UNet lee el prompt mediante atención cruzada." in text
    # Shapes only: the chosen piece's map against the shape's pixels, its numbers written the Spanish way.
    assert "de su mapa (sumado sobre los pasos) sobre los píxeles de la figura, que son el" in text
    assert "(Attend-and-Excite, Chefer et al., 2023)" in text
    assert "(un reparto uniforme necesitaría el 50 %)" in text  # main_text makes the no-break space a space
    for english in ("Who gets the attention", "which of you matters here", "the shape's pixels"):
        assert english not in text
    expect(page.locator('img[alt^="La escala de colores del mapa (viridis)"]')).to_have_count(1)
    expect(page.get_by_text("Cada resolución por separado")).to_be_visible()


def test_lesson_8_on_shapes_speaks_spanish_and_names_what_the_judge_sees(page: Page, stack: Stack):
    open_in_spanish(page, stack, "8. ¿Cuándo se decide la imagen?")
    expect(page.get_by_text("Lo que conservó cada imagen, medido")).to_be_visible()
    expect(page.get_by_text("El color, la forma y la posición son lo que ve el juez de píxeles.")).to_be_visible()
    settle(page, "lesson-8-es")
    text = main_text(page)
    assert "a partir del paso k + 1, la UNet lee el nuevo prompt" in text
    assert "What each picture kept" not in text and "Prompt-to-Prompt" not in text  # Shapes: measured, not reported

    page.get_by_role("button", name="Generar las dos").click()
    expect(page.get_by_text("Las dos ejecuciones comparten exactamente sus primeros")).to_be_visible()
    settle(page, "lesson-8-es-own")
    # The judge's words are the prompts' own English words, quoted inside the Spanish sentence.
    expect(page.get_by_text("El juez ve «red circle on the left» en la original")).to_be_visible()
