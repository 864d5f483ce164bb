"""Attacks through a real browser: Chromium against a real Streamlit server and a real inference service.

What a student can try from the sign-in page, with only a browser: guessing the
class code, a name that would deceive the teacher, a classmate's name while the
classmate is online, and closing a tab that holds a place in the queue.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.support.frontend import launched_chromium, running_frontend
from tests.support.servers import ServerThread

CLASS_CODE = "owl-42"


@pytest.fixture(scope="module")
def frontend_url(lesson_server: ServerThread, tmp_path_factory) -> Iterator[str]:
    """`streamlit run frontend/app.py` with a class code, pointed at the lesson server."""
    env = {"CLASSROOM_INFERENCE_ADDR": lesson_server.address, "CLASSROOM_CLASS_CODE": CLASS_CODE}
    with running_frontend(env, tmp_path_factory.mktemp("frontend") / "streamlit.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser(frontend_url):
    with launched_chromium() as browser:
        yield browser


@pytest.fixture
def page(browser, frontend_url) -> Iterator[Page]:
    """A fresh browser session (its own cookies), on the sign-in page."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    finished_runs(page)  # count the app's runs from the first one
    page.goto(frontend_url)
    expect(page.get_by_text("Type the class code")).to_be_visible()
    yield page
    context.close()


def sign_in(page: Page, code: str, name: str) -> None:
    """Fill the sign-in form and send it; return once the app has finished the run that answers it."""
    runs = finished_runs(page)
    before = runs[0]
    page.get_by_label("Class code").fill(code)
    page.get_by_label("Your name").fill(name)
    page.get_by_role("button", name="Start").click()
    deadline = time.monotonic() + 60
    while runs[0] == before:
        assert time.monotonic() < deadline, "the app never answered the sign-in"
        page.wait_for_timeout(20)


def finished_runs(page: Page) -> list[int]:
    """A one-item list counting the script runs the app has finished for this page (from its websocket)."""
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    counter = getattr(page, "_classroom_runs", None)
    if counter is None:
        counter = [0]

        def frame(payload: bytes | str) -> None:
            if isinstance(payload, bytes):
                with contextlib.suppress(Exception):  # not every frame is a whole ForwardMsg
                    counter[0] += ForwardMsg.FromString(payload).WhichOneof("type") == "script_finished"

        page.on("websocket", lambda socket: socket.on("framereceived", frame))
        page._classroom_runs = counter  # type: ignore[attr-defined]
    return counter


def test_a_name_with_a_hidden_direction_change_is_refused_in_the_browser(page):
    sign_in(page, CLASS_CODE, "Sam\u202eevil")
    expect(page.get_by_text("invisible or control")).to_be_visible()
    expect(page.get_by_text("Type the class code")).to_be_visible()


def test_a_classmates_name_is_refused_while_they_are_online(page, lesson_server):
    from services.common.client import ClassroomClient, ClientSettings

    classmate = ClassroomClient(ClientSettings(inference_addr=lesson_server.address))
    classmate.join_class("Priya", "priya-tab", "10.0.0.23")  # Priya's own computer, signed in
    sign_in(page, CLASS_CODE, "Priya")
    expect(page.get_by_text("already signed in as 'Priya' on another computer or browser")).to_be_visible()
    sign_in(page, CLASS_CODE, "Priya K")  # another name gets in
    expect(page.get_by_text("Type the class code")).to_have_count(0)
    assert "Priya K" in [entry.name for entry in lesson_server.call(lesson_server.classroom.students)]
    classmate.close()


def test_a_closed_tab_gives_its_place_in_the_queue_back(browser, frontend_url, lesson_server):
    classroom = lesson_server.classroom
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(60_000)
    finished_runs(tab)
    classroom.pause(True)  # the teacher paused: a picture asked for now waits in the queue
    try:
        tab.goto(frontend_url)
        sign_in(tab, CLASS_CODE, "Quinn")
        tab.get_by_test_id("stSidebarNavItems").get_by_role("link", name="Playground").click()
        tab.get_by_role("button", name="Generate").click()
        wait_for(lambda: classroom.scheduler.stats().queued_generations == 1, "the picture to join the queue")
        context.close()  # the student closes the tab
        wait_for(lambda: classroom.scheduler.stats().queued_generations == 0, "the closed tab's place to be freed")
        assert classroom.scheduler.stats().generations_cancelled >= 1
    finally:
        classroom.pause(False)


def wait_for(condition, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"waited {timeout_s:.0f} s for {what}"
        time.sleep(0.1)


def test_guessing_the_class_code_in_the_browser_slows_down_the_guesser_only(page, browser, frontend_url):
    from frontend.access.guard import FREE_TRIES

    for guess in range(FREE_TRIES):
        sign_in(page, f"owl-{guess}", "Robin")  # each answered before the next
        expect(page.get_by_text("That class code is not right")).to_be_visible()
    sign_in(page, CLASS_CODE, "Robin")  # the right code, too late: this tab must wait
    expect(page.get_by_text("Too many wrong codes")).to_be_visible()
    expect(page.get_by_text("Type the class code")).to_be_visible()  # still outside the class
    # A classmate at the same computer (the same address, 127.0.0.1), in a fresh tab: in at once.
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    try:
        classmate = context.new_page()
        classmate.set_default_timeout(60_000)
        finished_runs(classmate)
        classmate.goto(frontend_url)
        expect(classmate.get_by_text("Type the class code")).to_be_visible()
        sign_in(classmate, CLASS_CODE, "Alex")
        expect(classmate.get_by_text("Too many wrong codes")).to_have_count(0)
        expect(classmate.get_by_text("Type the class code")).to_have_count(0)  # past the sign-in page
    finally:
        context.close()


def test_only_the_same_browser_takes_a_name_over(browser, frontend_url, lesson_server):
    """The signed browser cookie, in a real browser: a student's second tab takes the name over, a classmate cannot."""
    from frontend.access.browser_id import COOKIE

    def new_tab(context) -> Page:
        tab = context.new_page()
        tab.set_default_timeout(60_000)
        finished_runs(tab)
        tab.goto(frontend_url)
        expect(tab.get_by_text("Type the class code")).to_be_visible()
        return tab

    noors, classmates = (browser.new_context(viewport={"width": 1200, "height": 900}) for _ in range(2))
    try:
        first = new_tab(noors)
        sign_in(first, CLASS_CODE, "Noor")
        expect(first.get_by_text("Type the class code")).to_have_count(0)
        (cookie,) = [c for c in noors.cookies() if c["name"] == COOKIE]
        assert cookie["sameSite"] == "Strict" and cookie["path"] == "/"
        # A classmate's browser at the same address (127.0.0.1): refused while Noor's tab is open.
        thief = new_tab(classmates)
        sign_in(thief, CLASS_CODE, "Noor")
        expect(thief.get_by_text("already signed in as 'Noor'")).to_be_visible()
        # Noor's own second tab sends her cookie: it takes the name over.
        second = new_tab(noors)
        sign_in(second, CLASS_CODE, "Noor")
        expect(second.get_by_text("Type the class code")).to_have_count(0)
        assert [c["value"] for c in noors.cookies() if c["name"] == COOKIE] == [cookie["value"]]
    finally:
        noors.close()
        classmates.close()
