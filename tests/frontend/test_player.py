"""The trajectory player and the stream statuses in a real Chromium, against the stack `make up` starts.

Reruns are counted on the page's websocket: every rerun the browser asks for is a
message it sends to the server, so a player that plays with no rerun sends none.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from typing import NamedTuple

import pytest
from playwright.sync_api import Frame, Locator, Page, expect, sync_playwright
from streamlit.proto.BackMsg_pb2 import BackMsg

from tests.frontend.conftest import ROOT
from tests.frontend.test_browser import ARTIFACTS, CHROMIUM_ARGS
from tests.support.frontend import stop, wait_for_frontend, wait_for_run
from tests.support.redis_server import RedisServer
from tests.support.servers import client_for, free_port, wait_until_serving

PLAYER = 'iframe[title="frontend.player.trajectory_player"]'
TEACHER_CODE = "owl-42"


class Stack(NamedTuple):
    url: str  # the front end
    grpc: str  # the inference service, for the test to play the teacher


# The first words of every status line (frontend/stream/progress.py).
STATUS = (
    r"^(Asking the image server|Starting:|Waiting for the model|You are next|Reading from the cache|"
    r"The model is computing|A classmate asked|Your teacher has paused|Done:|You stopped|Your teacher cleared|"
    r"The image server went away)"
)
WAITING_OR_COMPUTING = re.compile(
    r"^(Asking the image server|Starting:|Waiting for the model|You are next|The model is computing)"
)

# Records when the page was clicked, and when a status line first showed after that.
TIME_FIRST_STATUS = """
pattern => {
  const re = new RegExp(pattern);
  window.firstStatus = {
    clicked: null, shown: null, steps: [], firstStep: null, decoded: null,
    slotBeforeGuess: null, linesAtFirstStep: [],
  };
  document.addEventListener("click", () => { window.firstStatus.clicked = performance.now(); }, true);
  new MutationObserver(() => {
    const status = window.firstStatus;
    if (status.clicked === null) return;
    // Every line of the page, whatever element holds it (a running status is a progress bar's label).
    const texts = document.body.innerText.split("\\n").map(t => t.trim());
    if (status.shown === null && texts.some(t => re.test(t))) status.shown = performance.now();
    // The model's guess, drawn inline beside the status as the steps come (its caption a figcaption).
    const guesses = [...document.querySelectorAll("figcaption")]
      .filter(c => c.innerText.trim().startsWith("the model's guess so far"));
    for (const c of guesses) if (!status.steps.includes(c.innerText.trim())) status.steps.push(c.innerText.trim());
    if (status.firstStep === null && guesses.length) {
      status.firstStep = performance.now();
      // A guess is drawn only after a running status in the same box: a progress bar, whose code the
      // browser may still be loading (the first bar of a session), so its words can come a moment later.
      const holder = guesses[0].closest('[data-testid="stElementContainer"]');
      const before = holder && holder.previousElementSibling;
      status.slotBeforeGuess = before !== null && before.matches('[data-testid="stElementContainer"]');
      status.linesAtFirstStep = texts.filter(t => /step \\d+ of \\d+|cache|classmate/.test(t)).slice(0, 3);
    }
    const decoded = document.body.innerText.includes("the VAE's decode of the last latent");
    if (status.decoded === null && decoded) status.decoded = performance.now();
  }).observe(document.body, {subtree: true, childList: true, characterData: true});
}
"""
# The most example pickers the page ever showed at once.
COUNT_PICKERS = """
() => {
  window.mostPickers = 0;
  const count = () => document.querySelectorAll('input[role="combobox"][aria-label="Example"]').length;
  new MutationObserver(() => { window.mostPickers = Math.max(window.mostPickers, count()); })
    .observe(document.body, {subtree: true, childList: true});
}
"""
# Records, at every change of the page, the status lines shown at that moment.
WATCH_STATUSES = """
pattern => {
  const re = new RegExp(pattern);
  window.statusWatch = {most: 0, seen: [], together: []};
  const look = () => {
    const texts = [...document.querySelectorAll("p")].map(p => p.innerText.trim());
    const shown = [...new Set(texts.filter(t => re.test(t)))];
    const watch = window.statusWatch;
    watch.most = Math.max(watch.most, shown.length);
    for (const text of shown) if (!watch.seen.includes(text)) watch.seen.push(text);
    if (shown.length > 1) watch.together.push(shown);
  };
  new MutationObserver(look).observe(document.body, {subtree: true, childList: true, characterData: true});
  look();
}
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    """The stack as `make up` starts it (deploy/local-up.sh), Shapes model, over a Redis of its own, empty.

    So the catalog is truthful and every lesson example opens cold: computed when it is opened.
    """
    redis = RedisServer(tmp_path_factory.mktemp("redis")).start()
    ports = {name: str(free_port()) for name in ("GRPC", "FRONTEND", "METRICS")}
    env = os.environ | {
        "CLASSROOM_MODEL": "shapes",
        "CLASSROOM_GRPC_PORT": ports["GRPC"],
        "CLASSROOM_FRONTEND_PORT": ports["FRONTEND"],
        "CLASSROOM_METRICS_PORT": ports["METRICS"],
        "CLASSROOM_REDIS_URL": redis.url,
        "CLASSROOM_RATE_LIMIT_PER_MINUTE": "0",  # one browser opens lessons and generates
        "CLASSROOM_TEACHER_CODE": TEACHER_CODE,  # read by the service and the front end alike
        "CLASSROOM_CLASS_CODE": "",  # set but empty: no sign-in (`make up` makes a class code otherwise)
    }
    for name in ("CLASSROOM_INFERENCE_ADDR", "CLASSROOM_CATALOG"):
        env.pop(name, None)
    log = (tmp_path_factory.mktemp("stack") / "stack.log").open("w")
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
        redis.kill()


@pytest.fixture(scope="module")
def browser_page(stack: Stack) -> Iterator[tuple[Page, list[str]]]:
    """A Chromium page, and the reruns of the whole page it has asked the server for (on its websocket)."""
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed for the browser test: run `make install`"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(120_000)
        sent: list[str] = []

        def count(payload: bytes | str) -> None:
            message = BackMsg.FromString(payload if isinstance(payload, bytes) else payload.encode())
            # A run of the whole page; fragments of the app rerun by themselves on a timer, apart from it.
            if message.WhichOneof("type") == "rerun_script" and not message.rerun_script.fragment_id:
                sent.append(message.rerun_script.page_name)

        page.on("websocket", lambda socket: socket.on("framesent", count))
        yield page, sent
        browser.close()


def settle(page: Page, name: str) -> None:
    """Wait until the script has finished running, take a screenshot, fail on any exception shown."""
    wait_for_run(page)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    exceptions = page.locator('[data-testid="stException"]')
    assert exceptions.count() == 0, exceptions.first.inner_text()


def open_page(page: Page, title: str) -> None:
    """Open a page from the sidebar's list of pages."""
    page.get_by_test_id("stSidebarNavItems").get_by_role("link", name=re.compile(re.escape(title))).click()


def picker_box(page: Page) -> Locator:
    """The example picker's box, once the page has finished drawing it (one box: the marks' old one is gone)."""
    boxes = page.get_by_role("combobox", name="Example")
    expect(boxes).to_have_count(1)
    return boxes


def step_of(player: Frame) -> int:
    return int(player.locator("body").get_attribute("data-step"))


def playing(player: Frame) -> bool:
    return player.locator("body").get_attribute("data-playing") == "true"


def wait_for(condition, page: Page, timeout_ms: int = 30_000) -> None:
    """Poll `condition` until it holds (generously: the machine is shared)."""
    for _ in range(timeout_ms // 50):
        if condition():
            return
        page.wait_for_timeout(50)
    raise AssertionError("the condition never held")


def marked_ready(tab: Page, url: str, name: str) -> bool:
    """Whether the lesson at `url`, opened afresh in `tab`, offers the example `name` as ready."""
    tab.goto(url)
    settle(tab, "player-7-a-fresh-tab")
    picker_box(tab).click()
    said = tab.get_by_role("option", name=re.compile(re.escape(name))).inner_text()
    tab.keyboard.press("Escape")
    return said.endswith("· ready")


def player_frame(page: Page) -> Frame:
    expect(page.locator(PLAYER)).to_be_visible()
    frame = page.locator(PLAYER).element_handle().content_frame()
    assert frame is not None
    expect(frame.locator("#where")).to_contain_text("step")
    return frame


def test_a_cold_lesson_shows_progress_then_plays_without_a_rerun(browser_page, stack):
    page, sent = browser_page
    page.goto(stack.url)
    expect(page.get_by_text("The image server is running")).to_be_visible()
    settle(page, "player-0-welcome")
    open_page(page, "Words to numbers")  # a student going through the lessons in order
    expect(page.get_by_text("How alike").first).to_be_visible()
    settle(page, "player-0-words")

    # Nothing is precomputed in this stack, its cache empty: the lesson's first example is computed
    # when opened. The page records, in order, when the status, the first step and the decoded
    # picture were drawn: the status must come first (how soon is the benchmarks' business).
    page.evaluate(TIME_FIRST_STATUS, WAITING_OR_COMPUTING.pattern)
    open_page(page, "From noise to image")
    # The page's own record says when a status first showed (it may be gone again before a busy test looks).
    page.wait_for_function("window.firstStatus.shown !== null")
    page.screenshot(path=str(ARTIFACTS / "player-1-cold-lesson.png"))
    expect(page.get_by_text("the VAE's decode of the last latent").first).to_be_visible()
    status = page.evaluate("window.firstStatus")
    assert status["clicked"] is not None and status["shown"] is not None
    assert len(status["steps"]) >= 2  # its steps showed as they came
    # The status showed after the click, and the first guess was drawn below the status in its box. (Its
    # words can show a moment after that guess: the first progress bar of a session waits for the browser
    # to load the bar's code, the picture does not.) The steps came before the decoded picture.
    assert status["clicked"] <= status["shown"], status
    assert status["slotBeforeGuess"], status
    assert status["decoded"] is not None and status["firstStep"] <= status["decoded"], status
    settle(page, "player-2-lesson-ready")

    player = player_frame(page)
    last = int(player.locator("#scrub").get_attribute("max"))
    first = step_of(player)
    assert last > 3 and first == last // 3
    expect(page.get_by_text(f"latent at step {first}").first).to_be_visible()

    # Play: the shown step advances in the browser, and the browser asks the server for nothing.
    before = len(sent)
    player.select_option("#speed", "16")
    player.click("#play")
    wait_for(lambda: step_of(player) >= first + 3, page)
    assert len(sent) == before, "playing made the page run again"
    # At the end it stops by itself, and only then sends the step back (this lesson's charts follow it).
    wait_for(lambda: not playing(player), page)
    assert step_of(player) == last
    expect(page.get_by_text(f"latent at step {last}").first).to_be_visible()
    settle(page, "player-3-played-to-the-end")
    assert len(sent) > before

    # Keys: the arrows step, the space plays and pauses.
    player = player_frame(page)  # the same player (the page ran again, the iframe stays)
    player.click("#pictures")
    before = len(sent)
    player.locator("#player").press("ArrowLeft")
    player.locator("#player").press("ArrowLeft")
    assert step_of(player) == last - 2
    # The arrows send the step back once, after a short pause (held keys send one value): wait for that run.
    wait_for(lambda: len(sent) > before, page)
    settle(page, "player-4-arrows-sent")
    player = player_frame(page)
    assert step_of(player) == last - 2
    before = len(sent)
    player.select_option("#speed", "1")
    player.locator("#player").press(" ")
    assert playing(player)
    wait_for(lambda: step_of(player) == last - 1, page)
    assert len(sent) == before
    player.locator("#player").press(" ")
    assert not playing(player) and step_of(player) == last - 1  # paused (a step a second: before the end)
    player.locator("#player").press("ArrowRight")
    assert step_of(player) == last
    expect(page.get_by_text(f"latent at step {last}").first).to_be_visible()
    settle(page, "player-4-keys")

    # Another example, not computed yet: while it waits, the ready one is offered, one click away. The
    # teacher holds the class meanwhile, so the offer stays on screen however fast this machine computes.
    teacher = client_for(stack.grpc)
    teacher.set_paused(TEACHER_CODE, True)
    try:
        page.evaluate(COUNT_PICKERS)
        picker = page.get_by_test_id("stSelectbox").first
        picker.click()
        other = page.get_by_role("option").nth(1)
        other_name = other.inner_text().split(" · ")[0]
        assert "not ready" in other.inner_text()
        other.click()
        expect(page.get_by_text("These are ready at once")).to_be_visible()
        wait_for(lambda: len(teacher.classroom(TEACHER_CODE).jobs) == 1, page)  # the other one, held
        page.screenshot(path=str(ARTIFACTS / "player-5-ready-meanwhile.png"))
        offered = page.get_by_role("button", name=re.compile(r"\(seed \d+\)$"))
        expect(offered).to_have_count(1)  # the one computed so far
        ready = offered.inner_text()
        # While the other example waits, the page redraws its status: on a loaded CPU a pointer click's
        # wait for a still element can lose that race for minutes, where a person's click lands at
        # once. The click event itself, sent to the button as it stands, is what a person sends.
        offered.dispatch_event("click")
        expect(page.get_by_text("These are ready at once")).to_have_count(0)
        settle(page, "player-6-back-to-the-ready-one")
        expect(picker_box(page)).to_have_value(f"{ready} · ready")
    finally:
        teacher.set_paused(TEACHER_CODE, False)
    # The other one went on meanwhile: computed once the class goes on, opened again it is ready, no wait.
    wait_for(lambda: not teacher.classroom(TEACHER_CODE).jobs, page, timeout_ms=120_000)
    teacher.close()
    # The front end keeps the trajectory once its stream has ended (after the service has stored it): a fresh tab
    # on the same lesson, opened again until its picker marks the example ready, says when that has happened.
    other_tab = page.context.browser.new_page(viewport={"width": 1400, "height": 1000})
    wait_for(lambda: marked_ready(other_tab, page.url, other_name), page, timeout_ms=120_000)
    other_tab.close()
    page.evaluate(WATCH_STATUSES, STATUS)
    picker.click()
    page.get_by_role("option", name=re.compile(re.escape(other_name))).click()
    settle(page, "player-7-the-other-ready")
    expect(picker_box(page)).to_have_value(f"{other_name} · ready")
    assert page.evaluate("window.statusWatch.seen") == []
    assert page.evaluate("window.mostPickers") == 1  # its marks changed, and it stayed one box


def test_the_playground_shows_one_status_at_a_time_and_plays_without_a_rerun(browser_page, stack):
    page, sent = browser_page
    page.goto(stack.url)
    open_page(page, "Playground")
    page.get_by_label("Prompt", exact=True).fill("a yellow star at the top")
    page.evaluate(WATCH_STATUSES, STATUS)
    page.get_by_role("button", name="Generate").click()
    expect(page.get_by_role("button", name="Download the image (PNG)")).to_be_visible()
    settle(page, "player-4-playground")
    watch = page.evaluate("window.statusWatch")
    assert watch["together"] == [] and watch["most"] == 1, watch
    # It was seen at work, then done: the statuses followed each other in the one slot.
    assert any(re.match(WAITING_OR_COMPUTING, text) for text in watch["seen"]), watch["seen"]
    assert watch["seen"][-1].startswith("Done: 25 steps in "), watch["seen"]

    player = player_frame(page)
    assert step_of(player) == 25  # the look-back opens on the last step
    before = len(sent)
    player.click("#back")
    player.click("#back")
    assert step_of(player) == 23
    player.click("#play")
    wait_for(lambda: not playing(player), page)  # 2 steps at 4 a second
    assert step_of(player) == 25
    page.wait_for_timeout(500)
    assert len(sent) == before, "the Playground's player asks the server for nothing"
    assert player.locator("img").first.evaluate("i => getComputedStyle(i).imageRendering") == "pixelated"


def test_a_paused_class_is_told_so_and_its_stop_button_answers(browser_page, stack):
    """The teacher pauses: the student's picture says so (not "You are next"), and Stop still answers at once."""
    page, _ = browser_page
    teacher = client_for(stack.grpc)
    teacher.set_paused(TEACHER_CODE, True)
    try:
        page.goto(stack.url)
        open_page(page, "Playground")
        page.get_by_label("Prompt", exact=True).fill("a blue square on the right")
        page.evaluate(WATCH_STATUSES, STATUS)
        page.get_by_role("button", name="Generate").click()
        expect(page.get_by_text(re.compile(r"^Your teacher has paused"))).to_be_visible(timeout=15_000)
        page.screenshot(path=str(ARTIFACTS / "player-8-paused.png"))
        page.wait_for_timeout(1_500)  # nothing changes while paused: the page must still answer a click
        page.get_by_role("button", name="Stop").click()
        expect(page.get_by_text("You stopped the generation.")).to_be_visible(timeout=5_000)
        settle(page, "player-9-stopped")
        watch = page.evaluate("window.statusWatch")
        assert watch["together"] == [] and watch["most"] == 1, watch
        assert watch["seen"][-1] == "You stopped the generation.", watch["seen"]
        paused_at = next(i for i, text in enumerate(watch["seen"]) if text.startswith("Your teacher has paused"))
        assert not any(text.startswith("You are next") for text in watch["seen"][paused_at:]), watch["seen"]
        assert not teacher.classroom(TEACHER_CODE).jobs  # its place in the queue went back to the class
    finally:
        teacher.set_paused(TEACHER_CODE, False)
        teacher.close()
