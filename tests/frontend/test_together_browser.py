"""Present mode in a real Chromium: a teacher's browser leads, a student's browser follows.

Two browser contexts (two people, each with their own cookies) against a real
Streamlit server and a real inference service with the API token, as a class
runs it. The student's page follows the teacher's lesson example and step,
can leave and come back with one click, and is let go on Release. How soon it
follows is the page's poll (frontend.together.student_side.FOLLOW_EVERY_S), not timed here:
a busy CPU may take longer to draw the page.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.frontend.conftest import LESSON_CATALOG
from tests.support.frontend import launched_chromium, running_frontend
from tests.support.servers import ServerThread, running_server

CLASS_CODE, TEACHER_CODE, TOKEN = "owl-42", "heron-7", "the class's api token"
FOLLOW_S = 2.0  # two of the student page's looks at the class state (FOLLOW_EVERY_S); how long a student is left alone
WAIT_MS = 60_000  # anything else: pages compute on a busy CPU


@pytest.fixture(scope="module")
def service(settings, tmp_path_factory) -> Iterator[ServerThread]:
    from tests.support.redis_server import RedisServer

    redis = RedisServer(tmp_path_factory.mktemp("together-redis")).start()
    config = settings.model_copy(update={"catalog": LESSON_CATALOG, "teacher_code": TEACHER_CODE,
                                         "api_token": TOKEN, "redis_url": redis.url,
                                         "max_per_address": 0})  # fmt: skip
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
    }
    with running_frontend(env, tmp_path_factory.mktemp("frontend") / "streamlit.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser(frontend_url) -> Iterator[Browser]:
    with launched_chromium() as browser:
        yield browser


@pytest.fixture
def people(browser: Browser, frontend_url: str) -> Iterator[Callable[[str], Page]]:
    """Make people, each a browser context of their own (their own cookies), signed in; closed after the test."""
    contexts: list[BrowserContext] = []

    def make(name: str) -> Page:
        context = browser.new_context(viewport={"width": 1300, "height": 1000})
        contexts.append(context)
        return person(context, frontend_url, name)

    yield make
    for context in contexts:
        context.close()


def person(context: BrowserContext, url: str, name: str) -> Page:
    """A page of its own context, signed in to the class as `name`."""
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(url)
    page.get_by_label("Class code").fill(CLASS_CODE)
    page.get_by_label("Your name").fill(name)
    page.get_by_role("button", name="Start").click()
    expect(page.get_by_text("Type the class code")).to_have_count(0, timeout=WAIT_MS)
    return page


def open_teacher_page(page: Page) -> None:
    page.get_by_role("link", name="Teacher").click()
    page.get_by_label("Teacher code").fill(TEACHER_CODE)
    page.get_by_role("button", name="Open").click()
    expect(page.get_by_role("tab", name="Lead the class")).to_be_visible(timeout=WAIT_MS)


def go_to_step(teacher: Page, step: int) -> None:
    box = teacher.get_by_label("Step (0: the starting noise)")
    box.fill(str(step))
    box.press("Enter")


def test_the_students_page_follows_the_teacher_and_is_let_go_on_release(people):
    teacher, student = people("Ms Lee"), people("Sam")
    open_teacher_page(teacher)

    teacher.get_by_role("button", name="Lead the class").click()
    expect(teacher.get_by_text("You are leading the class: step 0")).to_be_visible(timeout=WAIT_MS)
    # The student was on the welcome page: their page goes to the lesson, at the teacher's step.
    expect(student.get_by_text("Your teacher is on step 0 of 4.")).to_be_visible(timeout=WAIT_MS)
    expect(student.get_by_test_id("stMainBlockContainer").get_by_text("1. The whole pipeline")).to_be_visible(
        timeout=WAIT_MS
    )

    go_to_step(teacher, 2)
    expect(teacher.get_by_text("You are leading the class: step 2")).to_be_visible(timeout=WAIT_MS)
    expect(student.get_by_text("Your teacher is on step 2 of 4.")).to_be_visible(timeout=WAIT_MS)

    # The student leaves for another page: not dragged back, a banner and one click to return.
    student.get_by_role("link", name="Playground").click()
    expect(student.get_by_text("Your teacher is leading the class")).to_be_visible(timeout=WAIT_MS)
    go_to_step(teacher, 3)  # the teacher moves on meanwhile
    expect(teacher.get_by_text("You are leading the class: step 3")).to_be_visible(timeout=WAIT_MS)
    time.sleep(FOLLOW_S)
    expect(student.get_by_role("heading", name="Playground")).to_be_visible(
        timeout=WAIT_MS
    )  # still where the student went
    student.get_by_role("button", name="Back to the teacher").click()
    expect(student.get_by_text("Your teacher is on step 3 of 4.")).to_be_visible(timeout=WAIT_MS)

    teacher.get_by_role("button", name="Release").click()
    expect(student.get_by_text("Your teacher is not leading the class right now")).to_be_visible(timeout=WAIT_MS)
    student.get_by_role("link", name="Playground").click()
    expect(student.get_by_role("heading", name="Playground")).to_be_visible(timeout=WAIT_MS)
    expect(student.get_by_text("Your teacher is leading the class")).to_have_count(0)


def test_three_students_answer_a_quick_check_and_the_reveal_reaches_all(people):
    teacher = people("Mr Okafor")
    students = [people(name) for name in ("Ana", "Bo", "Cy")]
    open_teacher_page(teacher)
    teacher.get_by_role("tab", name="Quick check").click()
    teacher.get_by_text("Ask your own question").click()
    teacher.get_by_label("Question", exact=True).fill("What picks the starting noise?")
    teacher.get_by_label("Answers, one per line (2 to 6)").fill("the prompt\nthe seed\nthe scheduler")
    teacher.get_by_label("The right answer's number").fill("2")
    teacher.get_by_role("button", name="Ask my question").click()
    expect(teacher.get_by_text("What picks the starting noise?: 0 answer(s)")).to_be_visible(timeout=WAIT_MS)

    for student, answer in zip(students, ("B: the seed", "B: the seed", "A: the prompt"), strict=True):
        expect(student.get_by_text("What picks the starting noise?")).to_be_visible(timeout=WAIT_MS)
        student.get_by_role("button", name=answer).click()
        expect(student.get_by_text("Answered.")).to_be_visible(timeout=WAIT_MS)
    expect(teacher.get_by_text("What picks the starting noise?: 3 answer(s)")).to_be_visible(timeout=WAIT_MS)
    expect(students[0].get_by_text("The answer is")).to_have_count(0)  # not before the teacher reveals it

    teacher.get_by_role("button", name="Reveal the answer").click()
    for student, verdict in zip(students, ("You got it!", "You got it!", "Not this time."), strict=True):
        seen = student.get_by_text("The answer is B: the seed.")
        expect(seen).to_be_visible(timeout=WAIT_MS)
        expect(seen).to_contain_text(verdict)
        expect(seen).to_contain_text("A: 1, B: 2, C: 0")
