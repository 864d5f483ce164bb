"""End to end in a real Chromium: the stack started as `make up` starts it, every lesson opened.

Screenshots land in test-artifacts/e2e/. Any exception shown on a page fails the test.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Page, expect, sync_playwright

from services.shapes.judge import judge
from tests.frontend.conftest import ROOT
from tests.support.servers import free_port, wait_until_serving

ARTIFACTS = ROOT / "test-artifacts" / "e2e"
expect.set_options(timeout=120_000)  # a live generation on a CPU takes seconds
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
# Each page's title, and something drawn only once everything above it has loaded (the pages
# compute uncached lesson examples as they go: the next click must not come before they finish).
LESSONS = [
    ("1. The whole pipeline", "What flows between the stages"),
    ("2. Words to numbers", "The same word in another prompt"),
    ("3. From noise to image", "the VAE's decode of the last latent: the real image"),
    ("4. Guidance", "Try it yourself"),
    ("5. Change one word", "Both paths in two dimensions"),
    ("6. Seeds and schedulers", "How much the picture changes between"),
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[str]:
    """deploy/local-up.sh, the script behind `make up`, on free ports with the Shapes model and its lessons."""
    ports = {name: str(free_port()) for name in ("GRPC", "FRONTEND", "REDIS", "METRICS")}
    env = os.environ | {
        "CLASSROOM_MODEL": "shapes",
        "CLASSROOM_GRPC_PORT": ports["GRPC"],
        "CLASSROOM_FRONTEND_PORT": ports["FRONTEND"],
        "CLASSROOM_REDIS_PORT": ports["REDIS"],
        "CLASSROOM_METRICS_PORT": ports["METRICS"],
        "CLASSROOM_RATE_LIMIT_PER_MINUTE": "0",  # one browser opens every lesson and generates
        "CLASSROOM_TEACHER_CODE": "owl-42",  # read by the service and the front end alike
    }
    for name in ("CLASSROOM_REDIS_URL", "CLASSROOM_INFERENCE_ADDR", "CLASSROOM_CATALOG"):
        env.pop(name, None)
    log = (tmp_path_factory.mktemp("stack") / "stack.log").open("w")
    process = subprocess.Popen(
        ["bash", str(ROOT / "deploy" / "local-up.sh")], env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{ports['FRONTEND']}"
    try:
        wait_until_serving(f"127.0.0.1:{ports['GRPC']}", process=process)
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


@pytest.fixture(scope="module")
def page(stack) -> Iterator[Page]:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed for the browser test: run `make install`"
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(120_000)
        yield page
        browser.close()


def settle(page: Page, name: str) -> None:
    """Wait until the script has finished running, check for exceptions, take a screenshot."""
    page.wait_for_timeout(300)
    expect(page.locator('[data-testid="stStatusWidget"]')).to_have_count(0, timeout=120_000)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    exceptions = page.locator('[data-testid="stException"]')
    assert exceptions.count() == 0, exceptions.first.inner_text()


def test_a_student_goes_through_the_app(page: Page, stack: str):
    page.goto(stack)
    expect(page.get_by_role("heading", name="Diffusion Classroom")).to_be_visible()
    expect(page.get_by_text("The image server is running")).to_be_visible()
    settle(page, "0-welcome")

    for index, (title, section) in enumerate(LESSONS, start=1):
        page.get_by_role("link", name=title).click()
        expect(page.get_by_role("heading", name=title)).to_be_visible()
        expect(page.get_by_text(section).first).to_be_visible()
        settle(page, f"{index}-lesson")
        if title == "5. Change one word":
            # The first pair changes the colour word: the student sees a red and a blue picture.
            expect(page.get_by_text("a red circle on the left").first).to_be_visible()
            assert [judge(p).colour for p in final_pictures(page)] == ["red", "blue"]

    page.get_by_role("link", name="The model").click()
    expect(page.get_by_role("heading", name="The model: Shapes")).to_be_visible()
    expect(page.get_by_text("Never seen together")).to_be_visible()
    settle(page, "6b-the-model")

    page.get_by_role("link", name="Playground").click()
    page.get_by_label("Prompt", exact=True).fill("a yellow star at the top")
    page.get_by_role("button", name="Generate").click()
    expect(page.get_by_role("button", name="Download the image (PNG)")).to_be_visible()
    expect(page.get_by_text("x_t after step 25")).to_be_visible()
    settle(page, "7-playground-generated")

    # Move the step slider back three steps: the pictures follow.
    slider = page.get_by_role("slider").last
    slider.focus()
    for _ in range(3):
        slider.press("ArrowLeft")
    expect(page.get_by_text("x_t after step 22")).to_be_visible()
    settle(page, "8-playground-step-22")
    assert judge(final_pictures(page)[0]).colour == "yellow"


def final_pictures(page: Page) -> list[np.ndarray]:
    """The pictures the page shows at the model's own size (the final images; previews are enlarged)."""
    pictures = []
    for source in page.locator('[data-testid="stImage"] img').evaluate_all("images => images.map(i => i.src)"):
        with Image.open(io.BytesIO(page.request.get(source).body())) as picture:
            if picture.size == (64, 64):
                pictures.append(np.asarray(picture.convert("RGB")))
    return pictures


def test_the_teacher_opens_the_teacher_page(page: Page, stack: str):
    page.goto(stack)
    page.get_by_role("link", name="Teacher").click()
    page.get_by_label("Teacher code").fill("owl-41")
    page.get_by_role("button", name="Open").click()
    expect(page.get_by_text("that teacher code is not right")).to_be_visible()
    page.get_by_label("Teacher code").fill("owl-42")
    page.get_by_role("button", name="Open").click()
    expect(page.get_by_text("Served without the GPU")).to_be_visible()
    expect(page.get_by_text("Blocked attempts")).to_be_visible()
    page.get_by_role("button", name="Pause generation").click()
    expect(page.get_by_text("Generation is paused")).to_be_visible()
    settle(page, "9-teacher-paused")
    page.get_by_role("button", name="Resume generation").click()
    expect(page.get_by_role("button", name="Pause generation")).to_be_visible()
