"""Benchmark: every lesson opened from the menu in one Chromium throttled 4x at 1366x768 (a school Chromebook).

The whole stack as `make up` starts it (Redis, the inference service on the Shapes
model, Streamlit), every lesson of the catalog precomputed into its Redis first, so an
opening reads the cache as in class. One Chromium page, 1366 by 768, its renderer slowed
4x with DevTools' `Emulation.setCPUThrottlingRate`. The page walks the menu as a student
does: Welcome, lessons 1 to 10, the Playground, each clicked in the sidebar from the page
before. For each:

- shown: seconds from the click until the document's title is the new page's;
- first picture: seconds from the click until the new page shows its first picture:
  an <img> loaded (complete, natural width > 0) in the page's main area or in the
  trajectory player's frame, a drawn chart (Vega canvas/svg) or a diagram drawn on the
  server (lesson 1's inline svg), not in a stale (greyed, left from the page before)
  element; "-" when the page draws none;
- CPU: the page's renderer main-thread seconds (`Performance.getMetrics` TaskDuration,
  the throttled page's own work) and every Chromium process's CPU seconds (/proc, the
  browser's tree), from the click until the page's script has finished and 1 s more;
- horizontal scrolling: the document, the app's view or its main area wider than its box.

The baseline, in the same run and the same way: the floor app (`floor_page.py`, its own
server) opened by a click from its start page. Then the player's memory: the Playground
makes a 50-step picture, the player plays it to the end at 16 steps/s, and the page's
JS heap (`JSHeapUsedSize`) and its renderer processes' PSS are read. Targets: each
first picture within 3 s, no horizontal scrolling at 1366 px, the player under 150 MB.

Run with `flock /tmp/team/bench.lock .venv/bin/python -m pytest -q -s -p no:xdist
tests/bench/test_bench_chromebook.py` (`BENCH_REPEATS`, 3 by default: medians). `BENCH_PAGES`
opens only some pages, named by the start of their titles, comma-separated, in the menu's
order (`BENCH_PAGES=Welcome,1.`: lesson 1 opened from Welcome, as in the whole walk); the
player's memory is read only when the Playground is among them.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import psutil
import pytest
from playwright.sync_api import CDPSession, Page, expect, sync_playwright

from services.precompute.render import render_catalog
from tests.bench.test_bench_stream import machine
from tests.frontend.test_browser import CHROMIUM_ARGS, Stack, running_stack
from tests.support.frontend import running_frontend
from tests.support.servers import client_for

REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
ONLY = [name.strip() for name in os.environ.get("BENCH_PAGES", "").split(",") if name.strip()]
RATE = 4
VIEWPORT = {"width": 1366, "height": 768}
PAGES = [
    "Welcome", "1. The whole pipeline", "2. Words to numbers", "3. From noise to image", "4. Guidance",
    "5. Change one word", "6. Seeds and schedulers", "7. Which word paints where",
    "8. When does the picture decide?", "9. What it learned from", "10. Teach it a new word", "Playground",
]  # fmt: skip
OPENED = [title for title in PAGES if not ONLY or any(title.startswith(name) for name in ONLY)]
PLAYER = 'iframe[title="frontend.player.trajectory_player"]'
WAIT_S = 60.0
STEPS = 50  # the player's memory is read after a run of this many steps
# [the document's title starts with `title`, a first picture is drawn, something scrolls sideways]
LOOK = """
title => {
  const titled = document.title.startsWith(title + " ·") || document.title === title;
  const main = document.querySelector('[data-testid="stMain"]') || document.body;
  const fresh = el => !el.closest('[data-stale="true"]') && el.getBoundingClientRect().width > 0;
  const loaded = img => img.complete && img.naturalWidth > 0 && img.getBoundingClientRect().width > 0;
  let picture = [...main.querySelectorAll("img")].some(i => loaded(i) && fresh(i))
    || [...main.querySelectorAll("canvas, svg.marks, svg.classroom-diagram")].some(fresh);
  for (const frame of main.querySelectorAll("iframe")) {
    try { if (fresh(frame) && [...frame.contentDocument.querySelectorAll("img")].some(loaded)) picture = true; }
    catch (e) {}
  }
  const wide = el => el && el.scrollWidth > el.clientWidth + 1;
  const view = document.querySelector('[data-testid="stAppViewContainer"]');
  const scrolls = document.scrollingElement.scrollWidth > window.innerWidth || wide(view) || wide(main);
  return [titled, picture, scrolls];
}
"""


class Opening(NamedTuple):
    shown_s: float
    picture_s: float | None
    task_s: float  # the page's renderer main thread (TaskDuration)
    chromium_s: float  # every Chromium process of this browser
    scrolls: bool


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("chromebook")) as running:
        summary = render_catalog(client_for(running.grpc), progress=False)
        assert not summary.failed
        yield running


@pytest.fixture(scope="module")
def floor(tmp_path_factory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("floor") / "floor.log"
    with running_frontend({}, log, script=Path(__file__).with_name("floor_page.py")) as url:
        yield url


def chromium_tree(marker: str) -> list[psutil.Process]:
    """The browser process whose command line holds `marker` (its profile folder), and its children."""
    for process in psutil.process_iter(["cmdline"]):
        if marker in " ".join(process.info["cmdline"] or []) and "--type=" not in " ".join(process.info["cmdline"]):
            return [process, *process.children(recursive=True)]
    raise AssertionError("Chromium's browser process not found")


def tree_cpu(marker: str) -> float:
    total = 0.0
    for process in chromium_tree(marker):
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            continue
    return total


def renderers_pss_mb(marker: str) -> float:
    total = 0.0
    for process in chromium_tree(marker):
        try:
            if "--type=renderer" in " ".join(process.cmdline()):
                total += process.memory_full_info().pss
        except psutil.Error:
            continue
    return total / 2**20


def metric(cdp: CDPSession, name: str) -> float:
    return next(m["value"] for m in cdp.send("Performance.getMetrics")["metrics"] if m["name"] == name)


def settled(page: Page) -> None:
    expect(page.get_by_test_id("stApp")).to_have_attribute("data-test-script-state", "notRunning", timeout=120_000)


def click_open(page: Page, cdp: CDPSession, marker: str, link: str, title: str) -> Opening:
    """Click `link` in the sidebar's menu; time the new page until its title and its first picture show."""
    settled(page)
    page.wait_for_timeout(1500)  # the page before has finished its own work
    task, cpu = metric(cdp, "TaskDuration"), tree_cpu(marker)
    start = time.monotonic()
    page.get_by_test_id("stSidebar").get_by_role("link", name=link, exact=True).click(no_wait_after=True)
    shown_s = picture_s = None
    scrolls = False
    while time.monotonic() - start < WAIT_S:
        titled, picture, scrolls = page.evaluate(LOOK, title)
        now = time.monotonic() - start
        if titled and shown_s is None:
            shown_s = now
        if titled and picture:
            picture_s = now
            break
        if (
            shown_s is not None
            and now - shown_s > 5
            and page.get_by_test_id("stApp").get_attribute("data-test-script-state") == "notRunning"
        ):
            break  # the page has finished and drawn no picture
        page.wait_for_timeout(25)
    assert shown_s is not None, f"{title} never opened"
    settled(page)
    page.wait_for_timeout(1000)
    scrolls = scrolls or page.evaluate(LOOK, title)[2]
    return Opening(shown_s, picture_s, metric(cdp, "TaskDuration") - task, tree_cpu(marker) - cpu, scrolls)


def player_memory(page: Page, cdp: CDPSession, marker: str) -> tuple[int, float, float]:
    """The Playground makes a 50-step picture; the player plays it to the end: (steps, JS heap MB, renderers MB)."""
    # Streamlit's slider thumb carries no aria-valuenow: the number it shows above the thumb is read instead.
    slider = page.get_by_test_id("stSlider").filter(has=page.get_by_text("Steps", exact=True))
    shown = slider.get_by_test_id("stSliderThumbValue")
    slider.get_by_role("slider").focus()
    for _ in range(200):
        now = int(shown.inner_text().strip())
        if now == STEPS:
            break
        page.keyboard.press("ArrowRight" if now < STEPS else "ArrowLeft")
    expect(shown).to_have_text(str(STEPS))
    settled(page)
    page.get_by_label("Prompt", exact=True).fill("a red circle at the top")
    page.get_by_role("button", name="Generate").click()
    expect(page.get_by_role("button", name="Download the image (PNG)")).to_be_visible(timeout=120_000)
    settled(page)
    frame = page.locator(PLAYER).first.element_handle().content_frame()
    steps = int(frame.locator("#scrub").get_attribute("max"))
    frame.locator("#speed").select_option("16")
    frame.locator("#scrub").evaluate("s => { s.value = 0; s.dispatchEvent(new Event('input', {bubbles: true})); }")
    if frame.locator("body").get_attribute("data-playing") != "true":
        frame.locator("#play").click()
    expect(frame.locator("body")).to_have_attribute("data-playing", "false", timeout=60_000)
    cdp.send("HeapProfiler.collectGarbage")
    page.wait_for_timeout(1000)
    return steps, metric(cdp, "JSHeapUsedSize") / 2**20, renderers_pss_mb(marker)


def run_once(browser, stack: Stack, floor: str, marker: str) -> tuple[dict[str, Opening], Opening, tuple]:
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(120_000)
    cdp = context.new_cdp_session(page)
    cdp.send("Performance.enable", {"timeDomain": "threadTicks"})
    cdp.send("Emulation.setCPUThrottlingRate", {"rate": RATE})
    page.goto(floor)
    expect(page.get_by_role("heading", name="The floor")).to_be_visible()
    floor_open = click_open(page, cdp, marker, "The picture", "The picture")
    page.goto(stack.url + "/playground")
    expect(page.get_by_role("heading").first).to_be_visible()
    openings = {}
    for title in OPENED:
        openings[title] = click_open(page, cdp, marker, title, title)
    memory = (0, float("nan"), float("nan"))
    try:
        if OPENED[-1] == "Playground":
            memory = player_memory(page, cdp, marker)
    except Exception as error:  # the openings' table still prints; the memory row says why it is missing
        print(f"the player's memory was not measured: {error!r}")
    context.close()
    return openings, floor_open, memory


def test_every_lesson_on_a_chromebook_class_browser(stack: Stack, floor: str):
    assert OPENED, f"BENCH_PAGES={os.environ.get('BENCH_PAGES')!r} names no page of the menu"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"\nChromebook-class browser: CPU throttled {RATE}x, 1366x768; {machine()}; commit {commit}, "
          f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC; Shapes, every lesson precomputed; "
          f"load average at the start {os.getloadavg()[0]:.2f}")  # fmt: skip
    runs = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        marker = browser_profile_marker()
        for _ in range(REPEATS):
            runs.append(run_once(browser, stack, floor, marker))
        browser.close()
    print(f"load average at the end (1, 5, 15 min): {', '.join(f'{load:.2f}' for load in os.getloadavg())}")
    floor_picture = statistics.median(r[1].picture_s or 0 for r in runs)
    floor_task = statistics.median(r[1].task_s for r in runs)
    print(f"{'page':34s} {'shown s':>8s} {'picture s':>10s} {'x floor':>8s} {'page CPU s':>10s} "
          f"{'x floor':>8s} {'Chromium CPU s':>14s} {'h-scroll':>8s}")  # fmt: skip

    def row(name: str, openings: list[Opening]) -> None:
        pictures = [o.picture_s for o in openings if o.picture_s is not None]
        picture = statistics.median(pictures) if len(pictures) == len(openings) else None
        task = statistics.median(o.task_s for o in openings)
        print(f"{name:34s} {statistics.median(o.shown_s for o in openings):8.2f} "
              f"{'-' if picture is None else f'{picture:.2f}':>10s} "
              f"{'-' if picture is None else f'{picture / floor_picture:.1f}':>8s} {task:10.2f} "
              f"{task / floor_task:8.1f} {statistics.median(o.chromium_s for o in openings):14.2f} "
              f"{'yes' if any(o.scrolls for o in openings) else 'no':>8s}")  # fmt: skip

    row("the floor page (same run)", [r[1] for r in runs])
    for title in OPENED:
        row(title, [r[0][title] for r in runs])
    if OPENED[-1] != "Playground":
        return
    steps = [r[2][0] for r in runs]
    heap = statistics.median(r[2][1] for r in runs)
    pss = statistics.median(r[2][2] for r in runs)
    print(f"player after playing a {steps[0]}-step run to the end: JS heap {heap:.1f} MB, renderer PSS {pss:.0f} MB "
          f"({REPEATS} run(s), medians)")  # fmt: skip


def browser_profile_marker() -> str:
    """Playwright's profile folder for the browser just launched (the newest): names its process tree."""
    newest = None
    for process in psutil.process_iter(["cmdline", "create_time"]):
        line = " ".join(process.info["cmdline"] or [])
        browser = "chromium" in line and "--user-data-dir=" in line and "--type=" not in line
        if browser and (newest is None or process.info["create_time"] > newest[0]):
            newest = (process.info["create_time"], line.split("--user-data-dir=")[1].split()[0])
    assert newest is not None
    return newest[1]
