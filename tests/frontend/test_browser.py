"""End to end in a real Chromium: the stack started as `make up` starts it, every lesson opened.

Screenshots land in test-artifacts/e2e/. Any exception shown on a page fails the test, and so do
any error in the browser's console, any request to a host other than the school's own server,
and any chart drawn with no size.

On the same stack, each measured sentence of lessons 1, 3, 4, 5, 9 and the model page, as read:
the test fetches the same trajectories through the API, computes each measure again
(tests/frontend/test_measured_claims.py says how) and finds the page's sentence on the screen.
Those screenshots land in test-artifacts/e2e-claims/. (The lessons' pictures are the ones the
walk above made, read from the cache, as a class reads them.)
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Page, expect, sync_playwright

from frontend.material import claims
from services.common.api import pb
from services.common.client import StudentError
from services.common.shapes_judge import judge
from tests.frontend.conftest import ROOT
from tests.frontend.test_measured_claims import (
    expected_lesson_3,
    expected_lesson_4,
    expected_lesson_5,
    model_page_schedule,
    shapes_run,
    shapes_runs,
)
from tests.support.frontend import record_hosts, stop, wait_for_frontend, wait_for_pictures, wait_for_run
from tests.support.servers import client_for, free_port, wait_until_serving

ARTIFACTS = ROOT / "test-artifacts" / "e2e"
CLAIMS_ARTIFACTS = ROOT / "test-artifacts" / "e2e-claims"
EXAMPLE = {"pair": "colour", "side": "a", "seed": "1"}  # what lessons 3 and 4 open with, and lesson 5's first pair
expect.set_options(timeout=120_000)  # a live generation on a CPU takes seconds
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
# Each page's title, something drawn only once everything above it has loaded (the pages
# compute uncached lesson examples as they go: the next click must not come before they finish),
# and how many charts it draws (Vega-Lite, graphviz).
LESSONS = [
    ("1. The whole pipeline", "What flows between the stages", (0, 0)),  # its diagram is an SVG drawn on the server
    ("2. Words to numbers", "How alike the two prompts", (2, 0)),
    ("3. From noise to image", "the VAE's decode of the last latent: the real image", (1, 0)),
    ("4. Guidance", "Try it yourself", (1, 0)),
    ("5. Change one word", "Both paths in two dimensions", (2, 0)),
    ("6. Seeds and schedulers", "How much the picture changes between", (1, 0)),
]
TEACHER_CODE = "owl-42"


class Stack(NamedTuple):
    url: str  # the front end, the only server a student's browser may talk to
    grpc: str  # the inference service, for the test to play other students


@dataclass
class Seen:
    """What the browser reported while the tests ran."""

    errors: list[str] = field(default_factory=list)  # console errors and uncaught page errors
    hosts: set[str] = field(default_factory=set)  # every host a request went to


@pytest.fixture(scope="module")
def browser_seen() -> Seen:
    return Seen()


@pytest.fixture
def seen(browser_seen: Seen) -> Seen:
    """What the module's browser reports, from this test's start: one test's findings are its own, not the next's."""
    browser_seen.errors.clear()
    browser_seen.hosts.clear()
    return browser_seen


@contextmanager
def running_stack(folder: Path, **settings: str) -> Iterator[Stack]:
    """deploy/local-up.sh, the script behind `make up`, on free ports with the Shapes model and its lessons.

    `settings`: more CLASSROOM_ variables for the service and the front end alike. Its log is `folder`/stack.log.
    """
    ports = {name: str(free_port()) for name in ("GRPC", "FRONTEND", "REDIS", "METRICS")}
    env = os.environ | {
        "CLASSROOM_MODEL": "shapes",
        "CLASSROOM_GRPC_PORT": ports["GRPC"],
        "CLASSROOM_FRONTEND_PORT": ports["FRONTEND"],
        "CLASSROOM_REDIS_PORT": ports["REDIS"],
        "CLASSROOM_METRICS_PORT": ports["METRICS"],
        "CLASSROOM_RUN_DIR": str(folder / "run"),  # its own Redis data and secrets, never a developer's .run
        "CLASSROOM_RATE_LIMIT_PER_MINUTE": "0",  # one browser opens every lesson and generates
        "CLASSROOM_TEACHER_CODE": TEACHER_CODE,  # read by the service and the front end alike
        "CLASSROOM_CLASS_CODE": "",  # set but empty: no sign-in (`make up` makes a class code otherwise)
        **settings,
    }
    for name in ("CLASSROOM_REDIS_URL", "CLASSROOM_INFERENCE_ADDR", "CLASSROOM_CATALOG"):
        env.pop(name, None)
    log = (folder / "stack.log").open("w")
    process = subprocess.Popen(
        ["bash", str(ROOT / "deploy" / "local-up.sh")], env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{ports['FRONTEND']}"
    try:
        wait_until_serving(f"127.0.0.1:{ports['GRPC']}", process=process)
        wait_for_frontend(url, process)
        yield Stack(url, f"127.0.0.1:{ports['GRPC']}")
    finally:
        stop(process)
        log.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    """The whole stack as `make up` starts it, for this module's tests."""
    with running_stack(tmp_path_factory.mktemp("stack")) as running:
        yield running


@contextmanager
def chromium_page(artifacts: Path = ARTIFACTS, timeout_ms: int = 120_000) -> Iterator[Page]:
    """A page of Debian's headless Chromium, 1400 by 1000, with `artifacts` (its screenshots' folder) made afresh."""
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed for the browser test: run `make install`"
    shutil.rmtree(artifacts, ignore_errors=True)
    artifacts.mkdir(parents=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(timeout_ms)
            yield page
        finally:
            browser.close()


@pytest.fixture(scope="module")
def page(stack, browser_seen) -> Iterator[Page]:
    with chromium_page() as page:
        page.on("console", lambda said: record_console(browser_seen, said.type, said.text, said.location))
        page.on("pageerror", lambda error: browser_seen.errors.append(f"uncaught: {error}"))
        record_hosts(page, browser_seen.hosts)
        yield page


def record_console(seen: Seen, kind: str, text: str, location: dict) -> None:
    if kind == "error":
        seen.errors.append(f"console: {text} at {location.get('url', '')}")


def settle(page: Page, name: str, seen: Seen, stack: Stack, charts: tuple[int, int] | None = None) -> None:
    """Wait until the script has finished running, take a screenshot, and check the page.

    No exception shown, no console error, nothing asked of any host but our server, and every
    chart drawn with a size (`charts`, where given: how many Vega-Lite and graphviz charts the page has).
    """
    wait_for_run(page)
    wait_for_pictures(page)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    exceptions = page.locator('[data-testid="stException"]')
    assert exceptions.count() == 0, exceptions.first.inner_text()
    vega = page.locator('[data-testid="stVegaLiteChart"]')
    graphviz = page.locator('[data-testid="stGraphVizChart"]')
    if charts is not None:
        expect(vega).to_have_count(charts[0])
        expect(graphviz).to_have_count(charts[1])
    for number, chart in enumerate([*vega.all(), *graphviz.all()], start=1):
        if charts is None and not chart.is_visible():
            continue  # in a closed expander or another tab; the lessons counted above show all of theirs
        drawing = chart.locator("canvas, svg").first
        expect(drawing).to_be_visible()
        box = drawing.bounding_box()
        assert box and box["width"] > 50 and box["height"] > 50, f"{name}: chart {number} drawn at {box}"
        chart.screenshot(path=str(ARTIFACTS / f"{name}-chart-{number}.png"))
    assert seen.errors == [], f"{name}: {seen.errors}"
    assert seen.hosts == {urlsplit(stack.url).netloc}, f"{name}: requests went to {seen.hosts}"


def test_a_student_goes_through_the_app(page: Page, stack: Stack, seen: Seen):
    page.goto(stack.url)
    expect(page.get_by_role("heading", name="Diffusion Classroom")).to_be_visible()
    expect(page.get_by_text("The image server is running")).to_be_visible()
    settle(page, "0-welcome", seen, stack)

    for index, (title, section, charts) in enumerate(LESSONS, start=1):
        if index == 1:  # the welcome page's own link to the first lesson
            page.get_by_test_id("stMain").get_by_role("link", name=title).click()
        else:
            page.get_by_test_id("stSidebarNav").get_by_role("link", name=title).click()
        expect(page.get_by_role("heading", name=title)).to_be_visible()
        expect(page.get_by_text(section).first).to_be_visible()
        settle(page, f"{index}-lesson", seen, stack, charts)
        if title == "1. The whole pipeline":
            # The pipeline's diagram, painted from the server's SVG: drawn with a size, named for a screen reader.
            diagram = page.get_by_role("img", name=re.compile("^Diagram of the pipeline"))
            expect(diagram).to_be_visible()
            box = diagram.bounding_box()
            assert box and box["width"] > 300 and box["height"] > 150, f"the pipeline's diagram drawn at {box}"
            expect(diagram.locator("text", has_text="② Denoising loop")).to_be_visible()
            # The loop's box opens on the latent clearing: the noise and five steps, on one row; under it the
            # model's guess at the same five steps, decoded by Shapes' VAE (a picture at every step).
            page.get_by_role("tab", name="② Denoising loop").click()
            thumbnails = page.get_by_role("tabpanel").locator('[data-testid="stImage"] img')
            expect(thumbnails).to_have_count(11)
            rows = {round(thumbnail.bounding_box()["y"]) for thumbnail in thumbnails.all()}
            assert len(rows) == 2, f"the loop's thumbnails sit on {len(rows)} rows, not the latent's and the guess's"
            expect(page.get_by_text("the model's guess, decoded by its VAE")).to_be_visible()
            settle(page, "1b-lesson-the-loop", seen, stack)
        if title == "5. Change one word":
            # The first pair changes the colour word: the student sees a red and a blue picture.
            expect(page.get_by_text("a red circle on the left").first).to_be_visible()
            assert [judge(p).colour for p in final_pictures(page)] == ["red", "blue"]

    page.get_by_test_id("stSidebarNav").get_by_role("link", name="The model").click()
    expect(page.get_by_role("heading", name="The model: Shapes")).to_be_visible()
    expect(page.get_by_text("Never seen together")).to_be_visible()
    settle(page, "6b-the-model", seen, stack)

    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Playground").click()
    page.get_by_label("Prompt", exact=True).fill("a yellow star at the top")
    page.get_by_role("button", name="Generate").click()
    expect(page.get_by_role("button", name="Download the image (PNG)")).to_be_visible()
    # Looking back through the steps is the player's (its own checks are in test_player.py).
    expect(page.get_by_text("Look back at any step")).to_be_visible()
    settle(page, "7-playground-generated", seen, stack)
    assert judge(final_pictures(page)[0]).colour == "yellow"

    # Every other page in the menu (the teacher's has its own test): open, drawn, nothing amiss. Last, as
    # their pictures may go on computing after the page is left, and one student makes one at a time.
    menu = page.get_by_test_id("stSidebarNav").get_by_role("link")
    seen_titles = {title for title, _, _ in LESSONS} | {"Welcome", "The model", "Playground", "Teacher"}
    for title in [text.split("\n")[-1].strip() for text in menu.all_inner_texts()]:  # after the icon's name
        if title not in seen_titles:
            menu.filter(has_text=title).first.click()
            expect(page.get_by_role("heading").first).to_be_visible()
            settle(page, f"7b-{title.split('.')[0].strip().lower().replace(' ', '-')}", seen, stack)


def final_pictures(page: Page) -> list[np.ndarray]:
    """The pictures the page shows at the model's own size (the final images; previews are enlarged)."""
    pictures = []
    for source in page.locator('[data-testid="stImage"] img').evaluate_all("images => images.map(i => i.src)"):
        with Image.open(io.BytesIO(page.request.get(source).body())) as picture:
            if picture.size == (64, 64):
                pictures.append(np.asarray(picture.convert("RGB")))
    return pictures


def test_the_teacher_opens_the_teacher_page(page: Page, stack: Stack, seen: Seen):
    quiet_class(stack.grpc)
    page.goto(stack.url)
    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Teacher").click()
    page.get_by_label("Teacher code").fill("owl-41")
    page.get_by_role("button", name="Open").click()
    expect(page.get_by_text("that teacher code is not right")).to_be_visible()
    page.get_by_label("Teacher code").fill(TEACHER_CODE)
    page.get_by_role("button", name="Open").click()
    expect(page.get_by_text("Served without computing")).to_be_visible()  # a CPU server
    expect(page.get_by_text("Blocked attempts")).to_be_visible()
    page.get_by_role("button", name="Pause generation").click()
    expect(page.get_by_text("Generation is paused")).to_be_visible()
    settle(page, "9-teacher-paused", seen, stack)

    # Two students ask for pictures while the class is paused. Nobody touches the page: its
    # regular refresh shows them waiting, and the Clear button comes on with the numbers.
    clear = page.get_by_role("button", name="Clear the queue")
    expect(clear).to_be_disabled()
    students = wait_in_the_queue(stack.grpc, 2)
    expect(page.locator('[data-testid="stMetric"]').filter(has_text="Waiting")).to_contain_text("2")
    expect(clear).to_be_enabled(timeout=15_000)
    clear.click()
    expect(page.get_by_test_id("stToast")).to_contain_text("Cleared 2 waiting picture(s)")
    expect(clear).to_be_disabled(timeout=15_000)
    for student in students:
        student.join(30)

    page.get_by_role("button", name="Resume generation").click()
    expect(page.get_by_role("button", name="Pause generation")).to_be_visible()
    settle(page, "10-teacher-cleared", seen, stack)


def quiet_class(address: str) -> None:
    """Wait until nobody is generating (a lesson left earlier may still be computing its pictures)."""
    client = client_for(address)
    deadline = time.monotonic() + 120
    while client.classroom(TEACHER_CODE).jobs:
        assert time.monotonic() < deadline, "the class never went quiet"
        time.sleep(0.5)
    client.close()


def wait_in_the_queue(address: str, count: int) -> list[threading.Thread]:
    """`count` other students ask for a picture each, from threads (the class is paused: they wait)."""
    client = client_for(address)

    def ask(number: int) -> None:
        request = pb.GenerateRequest(prompt=f"a red circle number {number}", seed=number, num_inference_steps=2)
        request.width = request.height = 64
        try:
            for _ in client.generate(request, f"browser-test-{number}", name=f"Student {number}"):
                pass
        except StudentError:
            pass  # the teacher cleared the queue

    threads = [threading.Thread(target=ask, args=(n,), daemon=True) for n in range(count)]
    for thread in threads:
        thread.start()
    return threads


# -- the measured sentences, read on the same stack ---------------------------------------


def open_lesson(page: Page, title: str, last: str) -> None:
    """Click a lesson in the menu and wait until it has run to `last` (a text drawn at its end)."""
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=title).click()
    expect(page.get_by_role("heading", name=title)).to_be_visible()
    expect(page.get_by_text(last).first).to_be_visible()
    wait_for_run(page)
    CLAIMS_ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(CLAIMS_ARTIFACTS / f"{re.sub(r'[^a-z0-9]+', '-', title.lower())}.png"), full_page=True)
    exceptions = page.locator('[data-testid="stException"]')
    assert exceptions.count() == 0, exceptions.first.inner_text()


def on_screen(page: Page, sentence: str, name: str = "") -> None:
    """The sentence is on the page, seen (scrolled to, and photographed as `name` when given)."""
    found = page.get_by_test_id("stMain").get_by_text(sentence).first
    expect(found).to_be_visible()
    if name:
        found.scroll_into_view_if_needed()
        page.screenshot(path=str(CLAIMS_ARTIFACTS / f"{name}.png"))


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

    quiet_class(stack.grpc)  # the lessons opened before may still be computing their pictures
    # What the page should say, learned from the service: on a busy machine a quick call may take a while.
    client = client_for(stack.grpc, request_timeout_s=300)
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
