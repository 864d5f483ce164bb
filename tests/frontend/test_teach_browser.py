"""Lesson 10 in a real Chromium: five students draw a heart, the teacher teaches "heart", a student prompts it.

A real Shapes service (with Redis, the API token and the teacher code) and a real Streamlit
front end for the class "owls", as a class runs it; each person is a browser context of their
own. The students draw with the mouse on the lesson's canvas (pointer events, as a hand
makes them) and hand in; the teacher's page lists the five drawings and teaches the word with
a small step count; a student's page shows the training (the step, the loss chart and its
sentence), then the word taught, and paints "a red heart on the left". A second class on the
same server has no word: its "a red heart" is plain Shapes' trajectory, not the owls'.

Along the way, axe-core audits lesson 10's states for WCAG 2.1 AA (tests/support/accessibility.py,
as test_accessibility.py audits every other page): a drawing on the canvas and handed in, the
teacher's grid of the class's drawings, the training running, the word taught with the model's
pictures, and the teacher's side of the lesson. Every request a browser makes goes to the school's
own server.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect

from services.common.api import pb
from services.common.client import ClassroomClient, ClientSettings
from tests.frontend.test_browser import ARTIFACTS
from tests.frontend.test_together_browser import person
from tests.integration.helpers import collect, request
from tests.support.accessibility import Audits, settle
from tests.support.drawings import CANVAS, heart_outline
from tests.support.frontend import launched_chromium, record_hosts, running_frontend
from tests.support.servers import ServerThread, running_server

CLASS_CODE, TEACHER_CODE, TOKEN, CLASS = "owl-42", "heron-7", "the class's api token", "owls"
STEPS = 40  # small: the flow, not the quality (that is the benchmark's)
CANVAS_FRAME = 'iframe[title="frontend.drawing.canvas.drawing_canvas"]'
WAIT_MS = 120_000  # pages compute on a busy CPU
TRAINING_MS = 600_000  # painting the training pictures, then 40 steps, on two shared cores
LESSON = "10. Teach it a new word"


@pytest.fixture(scope="module")
def service(settings, tmp_path_factory) -> Iterator[ServerThread]:
    from tests.support.redis_server import RedisServer

    redis = RedisServer(tmp_path_factory.mktemp("teach-redis")).start()
    config = settings.model_copy(update={"model": "shapes", "teacher_code": TEACHER_CODE, "api_token": TOKEN,
                                         "redis_url": redis.url, "max_per_address": 0})  # fmt: skip
    with running_server(config) as server:
        yield server
    redis.stop()


@pytest.fixture(scope="module")
def frontend_url(service: ServerThread, tmp_path_factory) -> Iterator[str]:
    env = {
        "CLASSROOM_INFERENCE_ADDR": service.address,
        "CLASSROOM_CLASS_CODE": CLASS_CODE,
        "CLASSROOM_TEACHER_CODE": TEACHER_CODE,
        "CLASSROOM_API_TOKEN": TOKEN,
        "CLASSROOM_CLASS_NAME": CLASS,
    }
    with running_frontend(env, tmp_path_factory.mktemp("frontend") / "streamlit.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser(frontend_url) -> Iterator[Browser]:
    with launched_chromium() as browser:
        yield browser


@pytest.fixture
def people(browser: Browser, frontend_url: str) -> Iterator[Callable[[str], Page]]:
    """People, each a browser context of their own, signed in to the class; closed after the test."""
    contexts: list[BrowserContext] = []
    errors: list[str] = []
    hosts: set[str] = set()

    def make(name: str) -> Page:
        context = browser.new_context(viewport={"width": 1300, "height": 1000})
        contexts.append(context)
        record_hosts(context, hosts)
        page = person(context, frontend_url, name)
        page.on("pageerror", lambda error: errors.append(f"{name}: {error}"))
        page.on("console", lambda said: errors.append(f"{name}: {said.text}") if said.type == "error" else None)
        return page

    yield make
    for context in contexts:
        context.close()
    assert errors == []
    assert hosts == {urlsplit(frontend_url).netloc}, f"requests went to {hosts}"


def client_of(service: ServerThread, class_name: str) -> ClassroomClient:
    return ClassroomClient(ClientSettings(inference_addr=service.address, api_token=TOKEN), class_name)


def open_lesson(page: Page) -> None:
    page.get_by_test_id("stSidebarNavItems").get_by_role("link", name=LESSON).click()  # the menu's link
    expect(page.get_by_role("heading", name=LESSON)).to_be_visible(timeout=WAIT_MS)


def canvas_ready(page: Page) -> None:
    """The canvas's script has run (it marks the page with its count of lines): it hears the pointer now."""
    expect(page.frame_locator(CANVAS_FRAME).locator("body")).to_have_attribute("data-strokes", "0", timeout=WAIT_MS)


def draw_heart(page: Page, seed: int) -> None:
    """A heart's outline drawn with the mouse on the canvas, in one stroke, as a hand would."""
    canvas_ready(page)
    canvas = page.frame_locator(CANVAS_FRAME).locator("#canvas")
    canvas.scroll_into_view_if_needed(timeout=WAIT_MS)
    box = canvas.bounding_box()
    assert box is not None
    scale = box["width"] / CANVAS
    points = [(box["x"] + x * scale, box["y"] + y * scale) for x, y in heart_outline(random.Random(seed))]
    page.mouse.move(*points[0])
    page.mouse.down()
    for point in [*points[1:], points[0]]:
        page.mouse.move(*point)
    page.mouse.up()
    expect(page.frame_locator(CANVAS_FRAME).locator("body")).to_have_attribute("data-strokes", "1")


def shot(page: Page, name: str, near: Locator) -> None:
    """A screenshot of the page scrolled to `near` (the page scrolls inside its own container, not the window)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    near.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / f"teach-{name}.png"))


def touch_heart(page: Page, seed: int, kind: str) -> None:
    """A heart drawn as a finger ("touch") or a pen draws it: pointer events of that kind, on the canvas."""
    outline = heart_outline(random.Random(seed))
    canvas_ready(page)
    page.frame_locator(CANVAS_FRAME).locator("#canvas").evaluate(
        """(canvas, [outline, kind]) => {
            const box = canvas.getBoundingClientRect();
            const at = ([x, y]) => ({clientX: box.left + x * box.width / 256, clientY: box.top + y * box.height / 256});
            const fire = (type, point) => canvas.dispatchEvent(new PointerEvent(type, Object.assign(
                {pointerId: 7, pointerType: kind, isPrimary: true, button: 0, bubbles: true, cancelable: true},
                at(point))));
            fire("pointerdown", outline[0]);
            outline.slice(1).concat([outline[0]]).forEach((point) => fire("pointermove", point));
            fire("pointerup", outline[0]);
        }""",
        [outline, kind],
    )
    expect(page.frame_locator(CANVAS_FRAME).locator("body")).to_have_attribute("data-strokes", "1")


def test_a_class_teaches_heart_and_a_student_paints_it(people, service):
    audits = Audits(report="axe-lesson-10.json")
    students = []
    for number, name in enumerate(("Ana", "Bo", "Cy", "Dee", "Eli"), start=1):
        student = people(name)
        open_lesson(student)
        frame = student.frame_locator(CANVAS_FRAME)
        if number == 1:  # a slip first, taken back with Undo
            canvas_ready(student)
            frame.locator("#canvas").click(position={"x": 20, "y": 20})
            expect(frame.locator("body")).to_have_attribute("data-strokes", "1")
            frame.get_by_role("button", name="Undo").click()
            expect(frame.locator("body")).to_have_attribute("data-strokes", "0")
        if number == 2:  # a first try, cleared
            draw_heart(student, seed=99)
            frame.get_by_role("button", name="Clear").click()
            expect(frame.locator("body")).to_have_attribute("data-strokes", "0")
        if number in (3, 4):  # a finger, a pen
            touch_heart(student, seed=number, kind="touch" if number == 3 else "pen")
        else:
            draw_heart(student, seed=number)
        if number == 1:
            shot(student, "drawn", student.locator(CANVAS_FRAME))
            audits.check(student, "lesson 10, a drawing on the canvas")
        if number == 5:  # with the keyboard: from the canvas, Tab reaches Undo, Clear and Hand in
            frame.locator("#canvas").focus()
            for _ in range(3):
                student.keyboard.press("Tab")
            expect(frame.get_by_role("button", name="Hand in")).to_be_focused()
            student.keyboard.press("Enter")
        else:
            frame.get_by_role("button", name="Hand in").click()
        expect(student.get_by_text(f"You have 1 drawing in; the class has {number}.")).to_be_visible(timeout=WAIT_MS)
        # Taken: the canvas is cleared for the next drawing.
        expect(frame.locator("body")).to_have_attribute("data-strokes", "0")
        if number == 1:
            settle(student)
            audits.check(student, "lesson 10, a drawing handed in")
        students.append(student)
    watcher = students[0]
    for student in students[1:]:
        student.context.close()  # four fewer pages polling on a two-core machine

    teacher = people("Ms Lee")
    teacher.get_by_role("link", name="Teacher").click()
    teacher.get_by_label("Teacher code").fill(TEACHER_CODE)
    teacher.get_by_role("button", name="Open").click()
    expect(teacher.get_by_role("heading", name="Teach it a new word (lesson 10)")).to_be_visible(timeout=WAIT_MS)
    expect(teacher.get_by_text("The class's drawings: 5.")).to_be_visible(timeout=WAIT_MS)
    for name in ("Ana", "Bo", "Cy", "Dee", "Eli"):
        expect(teacher.get_by_text(name, exact=True)).to_be_visible()
    shot(teacher, "teacher", teacher.get_by_role("heading", name="Teach it a new word (lesson 10)"))
    settle(teacher)
    audits.check(teacher, "teacher's page, the class's drawings (lesson 10)")
    teacher.get_by_role("textbox", name="The new word").fill("heart")
    teacher.get_by_label("Training steps").fill(str(STEPS))
    teacher.get_by_role("button", name="Teach", exact=True).click()
    expect(teacher.get_by_text(re.compile("(Teaching|Asked to teach) “heart”"))).to_be_visible(timeout=WAIT_MS)

    # The student's page follows the training: the step, the loss curve and what it shows, then the word.
    expect(watcher.get_by_text("Now: training.").first).to_be_visible(timeout=WAIT_MS)
    expect(watcher.get_by_text(re.compile(rf"step [1-9]\d* of {STEPS}")).first).to_be_visible(timeout=TRAINING_MS)
    expect(watcher.get_by_test_id("stVegaLiteChart")).to_have_count(1, timeout=WAIT_MS)
    shot(watcher, "training", watcher.get_by_test_id("stVegaLiteChart"))
    audits.check(watcher, "lesson 10, training running")
    # One chart, two lines (the class's drawings, the four shapes it knew), and what each did.
    expect(watcher.get_by_text(re.compile(r"On the class's drawings, the loss (fell|rose|stayed|was)"))).to_be_visible(
        timeout=WAIT_MS
    )
    expect(watcher.get_by_text("Now: taught.").first).to_be_visible(timeout=TRAINING_MS)
    expect(watcher.get_by_text(f"Your class's model was trained on “heart” for {STEPS} steps")).to_be_visible()
    ended = watcher.get_by_text(
        re.compile(r"On the class's drawings, the loss \w+ from [\d.]+ to [\d.]+ over 40 steps")
    )
    expect(ended).to_be_visible()
    expect(ended).to_contain_text(re.compile(r"It (has not got worse|is getting worse) at the shapes it knew"))
    shot(watcher, "taught", watcher.get_by_text(re.compile(rf"The model's pictures at step {STEPS}\b")).first)
    expect(watcher.get_by_label("Prompt", exact=True)).to_have_value("a blue heart on the right", timeout=WAIT_MS)
    settle(watcher)
    audits.check(watcher, "lesson 10, taught (the model's pictures shown)")
    open_lesson(teacher)  # the teacher's controls above the same training
    expect(teacher.get_by_text("Now: taught.").first).to_be_visible(timeout=WAIT_MS)
    settle(teacher)
    audits.check(teacher, "lesson 10 on the teacher's side, taught")
    assert len(audits.states) == 6
    audits.passed()

    # The word in a prompt: the box offers it, the student asks for their own, and gets the picture.
    box = watcher.get_by_label("Prompt", exact=True)
    expect(box).to_have_value("a blue heart on the right", timeout=WAIT_MS)
    box.fill("a red heart on the left")
    box.press("Enter")
    watcher.get_by_role("button", name="Make the picture").click()
    expect(watcher.get_by_text("“a red heart on the left”, seed 1")).to_be_visible(timeout=WAIT_MS)
    expect(watcher.get_by_text("Something went wrong")).to_have_count(0)
    shot(watcher, "painted", watcher.get_by_text("“a red heart on the left”, seed 1"))

    # The class's state says so, and another class on the same server has no word: its "a red heart"
    # is plain Shapes' (the same trajectory as with no class at all), not the owls'.
    owls, foxes, nobody = client_of(service, CLASS), client_of(service, "foxes"), client_of(service, "")
    try:
        assert owls.teaching("check").taught_word == "heart"
        assert foxes.teaching("check").taught_word == ""
        assert foxes.teaching("check").phase == pb.TEACHING_PHASE_DRAWING
        red_heart = request("a red heart", seed=3, num_inference_steps=10)
        ours = collect(owls.generate(red_heart, "owl-check")).status.trajectory_key
        theirs = collect(foxes.generate(red_heart, "fox-check")).status.trajectory_key
        plain_shapes = collect(nobody.generate(red_heart, "no-class")).status.trajectory_key
        assert ours != theirs and theirs == plain_shapes
    finally:
        for client in (owls, foxes, nobody):
            client.close()
