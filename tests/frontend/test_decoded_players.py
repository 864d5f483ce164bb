"""Every step player on Shapes shows the model's guess decoded, in a real Chromium, and survives a resize.

A Shapes service (its VAE decodes every step by default) with a small catalog of
its lessons, precomputed except the switches of lesson 8 (opened cold, so their
status draws the guess as it comes); the front end as `streamlit run` starts it.
Each player's decoded panel is read at step 1, the middle step and the last one,
as pixels: a 64-pixel decode (not the 8x8 latent grid), not blank, and at the end
the prompt's colour by the pixel judge (services/common/shapes_judge.py); lesson 1,
which has no player, the same way from its row of decoded guesses. No page load may
fetch a `/media` file that is gone (a 404).
"""

from __future__ import annotations

import base64
import contextlib
import io
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Frame, Locator, Page, expect, sync_playwright

from services.common.shapes_judge import judge
from services.precompute.render import render_catalog
from services.shapes.data import BACKGROUND
from tests.frontend.test_browser import ARTIFACTS, CHROMIUM_ARGS
from tests.support.frontend import running_frontend, wait_for_run
from tests.support.redis_server import RedisServer
from tests.support.servers import ServerThread, client_for, running_server

TEACHER_CODE = "heron-7"
PLAYER = 'iframe[title="frontend.player.trajectory_player"]'
STEPS = 12
CATALOG = f"""
version: 1
collections:
  - id: prompt-pairs
    model: shapes
    lesson: change-one-word
    title: Change one word
    request: {{scheduler: euler, num_inference_steps: {STEPS}, width: 64, height: 64}}
    pairs:
      colour:
        - a red circle on the left
        - a blue circle on the left
    seeds: [3]
    guidance_scales: [7]
  - id: attention-maps
    model: shapes
    lesson: which-word-paints-where
    title: Which word paints where
    request:
      scheduler: euler
      num_inference_steps: {STEPS}
      guidance_scale: 7
      width: 64
      height: 64
      include: [cross_attention]
    prompts:
      red-circle: a red circle on the left
    seeds: [3]
  - id: branch-at-step
    model: shapes
    lesson: when-does-the-picture-decide
    title: When does the picture decide?
    request: {{scheduler: ddim, num_inference_steps: {STEPS}, guidance_scale: 7.5, width: 64, height: 64}}
    prompts:
      red-to-blue: a red circle on the left
    branch: {{prompt: a blue square on the right}}
    branch_steps: [0, 6, {STEPS}]
    seeds: [3]
"""


class Stack(NamedTuple):
    url: str
    service: ServerThread


@pytest.fixture(scope="module")
def stack(settings, tmp_path_factory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("decoded-players")
    catalog = folder / "catalog.yaml"
    catalog.write_text(CATALOG)
    redis = RedisServer(folder / "redis").start()
    config = settings.model_copy(
        update={"model": "shapes", "catalog": catalog, "redis_url": redis.url, "teacher_code": TEACHER_CODE}
    )
    try:
        with running_server(config) as service:
            client = client_for(service.address)
            for collection in ("prompt-pairs", "attention-maps"):  # lesson 8's switches stay cold
                assert not render_catalog(client, collection, progress=False).failed
            client.close()
            env = {"CLASSROOM_INFERENCE_ADDR": service.address, "CLASSROOM_TEACHER_CODE": TEACHER_CODE}
            with running_frontend(env, folder / "streamlit.log") as url:
                yield Stack(url, service)
    finally:
        redis.stop()


@pytest.fixture(scope="module")
def browser_page(stack: Stack) -> Iterator[tuple[Page, list[str]]]:
    """A Chromium page, and every `/media` address it was answered 404 for."""
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed for the browser tests: run `make install`"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(180_000)
        missing: list[str] = []
        page.on("response", lambda r: missing.append(r.url) if r.status == 404 and "/media/" in r.url else None)
        yield page, missing
        browser.close()


def settle(page: Page, name: str) -> None:
    wait_for_run(page, 180_000)
    page.screenshot(path=str(ARTIFACTS / f"decoded-{name}.png"), full_page=True)
    exceptions = page.locator('[data-testid="stException"]')
    assert exceptions.count() == 0, exceptions.first.inner_text()


def open_page(page: Page, stack: Stack, title: str) -> None:
    page.goto(stack.url)
    expect(page.get_by_test_id("stSidebarNavItems")).to_be_visible()
    page.get_by_test_id("stSidebarNavItems").get_by_role("link", name=re.compile(re.escape(title))).click()


def open_options(combobox: Locator, tries: int = 5) -> None:
    """Open a select box's list, clicking again (a bounded number of times) if it closed.

    The teacher's page refreshes its live parts every second or three, and a refresh landing
    on the click can close the list again.
    """
    for _ in range(tries):
        combobox.click()
        with contextlib.suppress(AssertionError):
            expect(combobox.page.get_by_role("option").first).to_be_visible(timeout=10_000)
            return
    expect(combobox.page.get_by_role("option").first).to_be_visible()


def player(page: Page, index: int = 0) -> Frame:
    expect(page.locator(PLAYER).nth(index)).to_be_visible(timeout=180_000)
    frame = page.locator(PLAYER).nth(index).element_handle().content_frame()
    assert frame is not None
    expect(frame.locator("#where")).to_contain_text("step")
    return frame


def panel_captions(frame: Frame) -> list[str]:
    return frame.locator("#pictures figcaption").all_inner_texts()


def picture_at(frame: Frame, step: int, panel: int) -> np.ndarray:
    """The picture a panel shows at `step` (moved there with the scrubber, as a student would)."""
    frame.locator("#scrub").evaluate("(box, v) => { box.value = v; box.dispatchEvent(new Event('input')); }", step)
    expect(frame.locator("body")).to_have_attribute("data-step", str(step))
    source = frame.locator("#pictures figure").nth(panel).locator("img").get_attribute("src")
    assert source and source.startswith("data:image/"), "the panel shows no picture"
    data = base64.b64decode(source.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def assert_decoded_everywhere(frame: Frame, panel: int, colour: str) -> None:
    """A player's decoded panel at step 1, the middle and the end (`assert_decodes`)."""
    last = int(frame.locator("#scrub").get_attribute("max"))
    frame.locator("#scrub").evaluate("box => { box.value = 0; box.dispatchEvent(new Event('input')); }")
    # Most players start from the noise (step 0); lesson 7's maps start at step 1.
    first = 1 if "step 1 of" in frame.locator("#where strong").inner_text() else 0
    total = last + first
    assert total >= STEPS  # every step of the run (the Playground makes more)
    assert_decodes({step: picture_at(frame, step - first, panel) for step in (1, total // 2, total)}, colour)


def assert_decodes(pictures: dict[int, np.ndarray], colour: str, size: int = 64) -> None:
    """Pictures of the guess at step 1, the middle and the end: `size`-pixel decodes, the last of `colour`."""
    for step, picture in pictures.items():
        assert picture.shape == (size, size, 3), f"step {step}: a {picture.shape[:2]} picture, not a decode"
        assert picture.std() > 3, f"step {step}: a blank picture"
    # Step 1 is a decode, not the 8x8 latent grid scaled up: its edges are not all on the grid's lines
    # (scaled up, a grid changes only there; a JPEG of it blurs them a pixel either side).
    assert grid_share(pictures[1]) < 0.6, "step 1 shows the latent's 8x8 grid, not a decode"
    final = pictures[max(pictures)]
    grey = np.abs(final.astype(int) - np.array(BACKGROUND)).sum(axis=2) < 30
    assert grey.mean() < 0.97, "the last picture is mostly background"
    verdict = judge(final)
    assert verdict.found and verdict.colour == colour, verdict


def grid_share(picture: np.ndarray) -> float:
    """The share of a picture's change from pixel to pixel that lies on (or a pixel beside) an 8x8 grid's lines."""
    size = picture.shape[1]
    grey = picture.astype(float).mean(axis=2)
    change = np.abs(np.diff(grey, axis=1)).sum(axis=0) + np.abs(np.diff(grey, axis=0)).sum(axis=1)
    lines = np.zeros(size - 1, dtype=bool)
    for line in range(size // 8 - 1, size - 1, size // 8):
        lines[line - 1 : line + 2] = True
    return float(change[lines].sum() / change.sum())


def misses(stack: Stack) -> int:
    """Requests the service found neither running nor cached: the model's work."""
    return stack.service.call(lambda: stack.service.classroom.hub.stats.cache_misses)


def shown_picture(image: Locator) -> np.ndarray:
    """The pixels of a picture on the page, as the browser decoded them (once it has loaded)."""
    expect(image).to_have_js_property("complete", True)
    source = image.evaluate(
        """img => {
          const canvas = document.createElement('canvas');
          canvas.width = img.naturalWidth;
          canvas.height = img.naturalHeight;
          canvas.getContext('2d').drawImage(img, 0, 0);
          return canvas.toDataURL('image/png');
        }"""
    )
    data = base64.b64decode(source.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_lesson_3_plays_the_decoded_guess_and_its_cost(browser_page, stack):
    page, _ = browser_page
    before = misses(stack)
    open_page(page, stack, "3. From noise to image")
    frame = player(page)
    settle(page, "lesson-3")
    assert misses(stack) == before  # precomputed with the decoded guesses: opened with no model work
    captions = panel_captions(frame)
    assert captions == [
        "the noisy latent the loop carries: a rough colour sketch of its numbers",
        "the model's guess of the clean picture: a rough colour sketch, not decoded",
        "the model's guess, decoded by its VAE",
    ]
    assert_decoded_everywhere(frame, 2, "red")
    # The cost, measured on the run, in one sentence.
    cost = page.get_by_text(re.compile(r"decoded into a picture by its VAE: \d+\.\d ms of the \d+ ms each step"))
    expect(cost).to_be_visible()


def test_players_survive_a_window_resize(browser_page, stack):
    page, _ = browser_page
    open_page(page, stack, "3. From noise to image")
    frame = player(page)
    settle(page, "resize-wide")
    fits = """() => {
      const last = [...document.querySelectorAll('#pictures figure')].pop().getBoundingClientRect();
      const player = document.getElementById('player').getBoundingClientRect();
      return {bottom: last.bottom, right: last.right, player: player.height,
              width: window.innerWidth, height: window.innerHeight};
    }"""
    for width in (520, 1400, 700):
        page.set_viewport_size({"width": width, "height": 1000})
        page.wait_for_timeout(800)  # the frame's height follows the player after the layout settles
        shown = frame.evaluate(fits)
        page.screenshot(path=str(ARTIFACTS / f"decoded-resize-{width}.png"), full_page=True)
        assert shown["bottom"] <= shown["height"] + 1, f"at {width} px the last panel is cut off: {shown}"
        assert shown["right"] <= shown["width"] + 1, f"at {width} px the last panel is cut off: {shown}"
        assert shown["height"] <= shown["player"] + 8, f"at {width} px the frame is taller than the player: {shown}"
    page.set_viewport_size({"width": 1400, "height": 1000})


def test_lesson_5_plays_both_decoded_guesses(browser_page, stack):
    page, _ = browser_page
    before = misses(stack)
    open_page(page, stack, "5. Change one word")
    frame = player(page)
    settle(page, "lesson-5")
    assert misses(stack) == before
    assert_decoded_everywhere(frame, 2, "red")
    assert_decoded_everywhere(frame, 3, "blue")


def test_lesson_7_plays_the_decoded_guess_beside_the_map(browser_page, stack):
    page, _ = browser_page
    before = misses(stack)
    open_page(page, stack, "7. Which word paints where")
    frame = player(page)
    settle(page, "lesson-7")
    assert misses(stack) == before
    assert panel_captions(frame)[1] == "the model's guess, decoded by its VAE"
    assert_decoded_everywhere(frame, 1, "red")


def test_lesson_8_opens_cold_and_plays_the_decoded_guess(browser_page, stack):
    page, _ = browser_page
    open_page(page, stack, "8. When does the picture decide?")
    settle(page, "lesson-8")
    frame = player(page)
    assert panel_captions(frame)[2] == "the model's guess, decoded by its VAE"
    total = int(frame.locator("#scrub").get_attribute("max"))
    for step in (1, total // 2, total):
        picture = picture_at(frame, step, 2)
        assert picture.shape == (64, 64, 3) and picture.std() > 3


def test_lesson_1_shows_the_decoded_guess_along_the_loop(browser_page, stack):
    page, _ = browser_page
    before = misses(stack)
    open_page(page, stack, "1. The whole pipeline")
    settle(page, "lesson-1")
    assert misses(stack) == before
    page.get_by_role("tab", name="② Denoising loop").click()
    panel = "the model's guess, decoded by its VAE"
    expect(page.get_by_text(panel, exact=True)).to_be_visible()
    # The row of guesses, from step 1 to the last, each named by its step (its text alternative).
    guesses = page.locator(f'img[alt^="{panel} for the prompt “a red circle on the left”, step "]')
    expect(guesses).to_have_count(5)
    steps = [int(re.search(r"step (\d+) of \d+$", guess.get_attribute("alt") or "")[1]) for guess in guesses.all()]
    assert steps[0] == 1 and steps[2] in (STEPS // 2, STEPS // 2 + 1) and steps[4] == STEPS, steps
    page.screenshot(path=str(ARTIFACTS / "decoded-lesson-1-loop.png"), full_page=True)
    # Drawn at 96 pixels (the 64-pixel decode scaled up, sent as a JPEG).
    assert_decodes({steps[index]: shown_picture(guesses.nth(index)) for index in (0, 2, 4)}, "red", size=96)


def test_lesson_4_plays_the_decoded_guess_beside_the_predictions(browser_page, stack):
    page, _ = browser_page
    before = misses(stack)
    open_page(page, stack, "4. Guidance")
    frame = player(page)
    settle(page, "lesson-4")
    assert misses(stack) == before
    assert panel_captions(frame)[4] == "where this step leads: the model's guess, decoded by its VAE"
    assert_decoded_everywhere(frame, 4, "red")


def test_the_playground_and_the_class_gallery_play_decoded_guesses(browser_page, stack):
    page, _ = browser_page
    open_page(page, stack, "Playground")
    page.get_by_label("Prompt", exact=True).fill("a green square on the right")
    page.get_by_role("button", name="Generate").click()
    frame = player(page)
    settle(page, "playground")
    assert panel_captions(frame)[2] == "the model's guess, decoded by its VAE"
    assert_decoded_everywhere(frame, 2, "green")

    page.get_by_role("button", name="Share with the class").click()
    expect(page.get_by_text("Shared with the class")).to_be_visible()
    teacher = client_for(stack.service.address)
    for item in teacher.submissions(TEACHER_CODE).items:
        teacher.review_submission(TEACHER_CODE, item.id, approve=True)
    teacher.close()
    open_page(page, stack, "Class gallery")
    page.get_by_role("button", name="Open in the player").first.click()
    frame = player(page)
    settle(page, "gallery")
    assert_decoded_everywhere(frame, 2, "green")


def test_the_teacher_leads_a_menu_lesson_and_both_players_decode(browser_page, stack):
    page, _ = browser_page
    open_page(page, stack, "Teacher")
    page.get_by_label("Teacher code").fill(TEACHER_CODE)
    page.get_by_role("button", name="Open").click()
    page.get_by_role("tab", name="Lead the class").click()
    # The lessons as the menu names them (those with examples here), not the catalog's collections.
    settle(page, "teacher")
    open_options(page.get_by_role("combobox", name="Lesson"))
    options = page.get_by_role("option").all_inner_texts()
    assert options == [
        "1. The whole pipeline",
        "3. From noise to image",
        "4. Guidance",
        "5. Change one word",
        "7. Which word paints where",
        "8. When does the picture decide?",
    ]
    page.get_by_role("option", name="3. From noise to image").click()
    settle(page, "teacher-lead")
    assert_decoded_everywhere(player(page), 2, "red")
    page.get_by_role("button", name="Lead the class").click()
    expect(page.get_by_text("You are leading the class")).to_be_visible()

    open_page(page, stack, "Follow along")
    expect(page.get_by_text("3. From noise to image:").first).to_be_visible()
    expect(page.get_by_text("Change one word:")).to_have_count(0)
    settle(page, "follow")
    assert_decoded_everywhere(player(page), 2, "red")
    teacher = client_for(stack.service.address)
    teacher.set_present(TEACHER_CODE, False)
    teacher.close()


def test_no_page_fetched_a_media_file_that_was_gone(browser_page):
    _, missing = browser_page
    assert missing == []


def test_the_menu_titles_are_the_apps():
    from frontend.together.menu import LESSONS

    app = (Path(__file__).resolve().parents[2] / "frontend" / "app.py").read_text()
    for lesson in LESSONS:
        assert f'st.Page("screens/lessons/{lesson.page}.py", title=_("{lesson.title}")' in app, lesson
