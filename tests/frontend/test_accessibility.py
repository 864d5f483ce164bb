"""WCAG 2.1 AA in a real Chromium: axe-core on every page and state a student and the teacher reach, and the keyboard.

The stack as `make up` starts it, with a class code (so the sign-in page is the first
page). One browser: a student's context, 1366 by 768 (a school Chromebook's screen), goes
through the sign-in, the welcome page, the ten lessons (each with its player drawn, where
it has one), the Playground with a picture made, the class gallery, Follow along and The
model; on the welcome page, each lesson and the Playground nothing scrolls sideways (WCAG
1.4.10: neither the document, the app's view, its main area nor the player's frame); a
teacher's context opens the teacher's page, leads the class (the student's Follow along and
present-mode banner) and asks a quick check (the student's page with it open, answered and
revealed). Lesson 10 through a teaching (a drawing on the canvas, handed in, the teacher's
grid of the class's drawings, the training running and the word taught) is audited where
a class teaches it in tests/frontend/test_teach_browser.py, by the same `Audits`.

axe-core runs offline (from `axe-playwright-python`), WCAG 2.0 and 2.1, A and AA. No page
may have a finding of impact serious or critical; the others are written to
test-artifacts/accessibility/axe.json and listed in docs/accessibility.md. Every request the
browser makes goes to the school's own server. The keyboard test drives the player with keys
alone and reaches the pickers and the teacher's buttons with Tab, each focus drawn.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Frame, Page, expect

from tests.frontend.test_browser import Stack, running_stack
from tests.support.accessibility import (
    WAIT_MS,
    Audits,
    focus_shows,
    focus_visible,
    settle,
    sideways,
)
from tests.support.frontend import launched_chromium, record_hosts

CLASS_CODE, TEACHER_CODE = "blue-7", "owl-42"
PLAYER = 'iframe[title="frontend.player.trajectory_player"]'
CHROMEBOOK = (1366, 768)  # a school Chromebook's screen: the walk's student reads every page at this size
# The nine lessons: the menu's title, and whether the page draws the trajectory player as it opens.
LESSONS = [
    ("1. The whole pipeline", False),
    ("2. Words to numbers", False),
    ("3. From noise to image", True),
    ("4. Guidance", True),
    ("5. Change one word", True),
    ("6. Seeds and schedulers", False),
    ("7. Which word paints where", True),
    ("8. When does the picture decide?", True),
    ("9. What it learned from", False),
    ("10. Teach it a new word", False),
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    # Every person here signs in from the same address (the test's): no cap on names per address.
    folder = tmp_path_factory.mktemp("a11y-stack")
    with running_stack(folder, CLASSROOM_CLASS_CODE=CLASS_CODE, CLASSROOM_MAX_PER_ADDRESS="0") as running:
        yield running


@pytest.fixture(scope="module")
def browser(stack: Stack) -> Iterator[Browser]:
    with launched_chromium() as browser:
        yield browser


class Person:
    """A browser context of its own (its own cookies), signed in to the class, with the hosts it asked."""

    def __init__(
        self, browser: Browser, stack: Stack, reduced_motion: bool = False, viewport: tuple[int, int] = (1400, 1000)
    ) -> None:
        self.context = browser.new_context(
            viewport={"width": viewport[0], "height": viewport[1]},
            reduced_motion="reduce" if reduced_motion else "no-preference",
        )
        self.page = self.context.new_page()
        self.page.set_default_timeout(WAIT_MS)
        self.hosts: set[str] = set()
        record_hosts(self.page, self.hosts)
        self.page.goto(stack.url)
        expect(self.page.get_by_text("Type the class code your teacher gave you")).to_be_visible(timeout=WAIT_MS)

    def sign_in(self, name: str) -> None:
        self.page.get_by_label("Class code").fill(CLASS_CODE)
        self.page.get_by_label("Your name").fill(name)
        self.page.get_by_role("button", name="Start").click()
        expect(self.page.get_by_text("The image server is running")).to_be_visible(timeout=WAIT_MS)
        settle(self.page)

    def open(self, title: str) -> None:
        link = self.page.get_by_test_id("stSidebarNav").get_by_role("link", name=re.compile(re.escape(title)))
        link.click()
        expect(self.page.get_by_role("heading").first).to_be_visible(timeout=WAIT_MS)
        settle(self.page)


def player_frame(page: Page) -> Frame:
    """The (first) trajectory player, once it has drawn a step."""
    expect(page.locator(PLAYER).first).to_be_visible(timeout=WAIT_MS)
    frame = page.locator(PLAYER).first.element_handle().content_frame()
    assert frame is not None
    expect(frame.locator("#where")).to_contain_text("step", timeout=WAIT_MS)
    return frame


def test_every_page_and_state_has_no_serious_or_critical_axe_finding(browser: Browser, stack: Stack):
    audits = Audits()
    student = Person(browser, stack, viewport=CHROMEBOOK)
    page = student.page
    audits.check(page, "sign-in")
    student.sign_in("Ana")
    audits.check(page, "welcome")
    wide = {"welcome": sideways(page)}

    for title, has_player in LESSONS:
        student.open(title)
        expect(page.get_by_role("heading", name=title)).to_be_visible()
        if has_player:
            player_frame(page)
        settle(page)
        audits.check(page, title + (" with its player" if has_player else ""))
        wide[title] = sideways(page)

    student.open("Playground")
    page.get_by_label("Prompt", exact=True).fill("a yellow star at the top")
    page.get_by_role("button", name="Generate").click()
    expect(page.get_by_role("button", name="Download the image (PNG)")).to_be_visible(timeout=WAIT_MS)
    player_frame(page)
    settle(page)
    audits.check(page, "Playground with a picture made")
    wide["Playground"] = sideways(page)
    page.get_by_role("button", name="Share with the class").click()
    expect(page.get_by_text("Shared with the class").first).to_be_visible()
    settle(page)

    for title in ("Class gallery", "The model", "Follow along"):
        student.open(title)
        audits.check(page, title + (" (nobody leading)" if title == "Follow along" else ""))

    teacher = Person(browser, stack)
    teacher.sign_in("Mr Okafor")
    desk = teacher.page
    teacher.open("Teacher")
    audits.check(desk, "teacher's sign-in")
    desk.get_by_label("Teacher code").fill(TEACHER_CODE)
    desk.get_by_role("button", name="Open").click()
    expect(desk.get_by_role("tab", name="Lead the class")).to_be_visible(timeout=WAIT_MS)
    settle(desk)
    audits.check(desk, "teacher's page")

    desk.get_by_role("button", name="Lead the class").click()
    expect(desk.get_by_text("You are leading the class: step 0")).to_be_visible(timeout=WAIT_MS)
    settle(desk)
    audits.check(desk, "teacher's page, leading")
    expect(page.get_by_text("Your teacher is on step 0")).to_be_visible(timeout=WAIT_MS)
    player_frame(page)
    settle(page)
    audits.check(page, "Follow along (the teacher leading)")
    student.open("Playground")
    expect(page.get_by_text("Your teacher is leading the class")).to_be_visible(timeout=WAIT_MS)
    audits.check(page, "present-mode banner (on the Playground)")

    desk.get_by_role("tab", name="Quick check").click()
    desk.get_by_text("Ask your own question").click()
    desk.get_by_label("Question", exact=True).fill("What picks the starting noise?")
    desk.get_by_label("Answers, one per line (2 to 6)").fill("the prompt\nthe seed\nthe scheduler")
    desk.get_by_label("The right answer's number").fill("2")
    desk.get_by_role("button", name="Ask my question").click()
    expect(desk.get_by_text("What picks the starting noise?: 0 answer(s)")).to_be_visible(timeout=WAIT_MS)
    settle(desk)
    audits.check(desk, "teacher's quick check, asked")
    expect(page.get_by_text("What picks the starting noise?")).to_be_visible(timeout=WAIT_MS)
    audits.check(page, "quick check open")
    page.get_by_role("button", name="B: the seed").click()
    expect(page.get_by_text("Answered.")).to_be_visible(timeout=WAIT_MS)
    audits.check(page, "quick check answered")
    desk.get_by_role("button", name="Reveal the answer").click()
    expect(page.get_by_text("The answer is B: the seed.")).to_be_visible(timeout=WAIT_MS)
    audits.check(page, "quick check revealed")
    settle(desk)
    audits.check(desk, "teacher's quick check, revealed")
    desk.get_by_role("tab", name="Lead the class").click()
    desk.get_by_role("button", name="Release").click()
    expect(page.get_by_text("Your teacher is leading the class")).to_have_count(0, timeout=WAIT_MS)

    for person in (student, teacher):
        assert person.hosts == {urlsplit(stack.url).netloc}, f"requests went to {person.hosts}"
        person.context.close()
    assert len(audits.states) == 26
    assert {title: found for title, found in wide.items() if found} == {}, "scrolls sideways at 1366 px"
    assert len(wide) == 12  # the welcome page, the ten lessons and the Playground
    # Each page says which it is in its title (WCAG 2.4.2): "3. From noise to image · Diffusion Classroom".
    titles = set(audits.states.values())
    assert len(titles) >= 15 and all(t.endswith(" · Diffusion Classroom") for t in titles), titles
    audits.passed()


def focused_in(frame: Frame) -> str:
    """The id of the element focused in `frame` ("" when the focus is in another document)."""
    return frame.evaluate("() => document.hasFocus() ? (document.activeElement || {}).id || '' : ''")


def tab_until(page: Page, found, most: int = 120) -> int:
    """Press Tab until `found()` holds; how many presses it took (fails after `most`)."""
    for presses in range(1, most + 1):
        page.keyboard.press("Tab")
        if found():
            return presses
    raise AssertionError(f"{most} presses of Tab never reached it")


def test_the_player_pickers_and_the_teachers_buttons_work_from_the_keyboard(browser: Browser, stack: Stack):
    student = Person(browser, stack, reduced_motion=True)  # the system asks for less motion
    page = student.page
    # Signed in with the keys alone: Tab to each box, type, Enter submits the form.
    tab_until(page, lambda: page.evaluate("() => document.activeElement.getAttribute('aria-label')") == "Class code")
    page.keyboard.type(CLASS_CODE)
    tab_until(page, lambda: page.evaluate("() => document.activeElement.getAttribute('aria-label')") == "Your name")
    page.keyboard.type("Bo")
    page.keyboard.press("Enter")
    expect(page.get_by_text("The image server is running")).to_be_visible(timeout=WAIT_MS)
    settle(page)
    student.open("3. From noise to image")
    player = player_frame(page)
    settle(page)
    page.locator("body").focus()

    # The example picker: reached by Tab, its focus drawn, opened by the arrow key, closed by Escape.
    tab_until(page, lambda: page.evaluate("() => document.activeElement.getAttribute('role')") == "combobox")
    shown = focus_shows(page)
    assert focus_visible(shown), f"the picker's focus is not drawn: {shown}"
    page.keyboard.press("ArrowDown")
    expect(page.get_by_role("listbox")).to_be_visible()
    # Escape to the picker itself: a rerun of the page between the two keys (the class's poll) may have moved
    # the focus off it, and a key pressed on the page then closes nothing.
    page.get_by_role("combobox", name="Example").first.press("Escape")
    expect(page.get_by_role("listbox")).to_have_count(0)

    # On to the player: its focus drawn, a name that says what it is, the arrows step, the space plays and pauses.
    tab_until(page, lambda: focused_in(player) == "player")
    shown = focus_shows(player)
    assert focus_visible(shown), f"the player's focus is not drawn: {shown}"
    assert player.locator("#player").get_attribute("aria-label").startswith("Trajectory player for the prompt “")
    first, last = step_of(player), int(player.locator("#scrub").get_attribute("max"))
    assert 0 < first < last
    # Less motion asked for: nothing plays by itself, and playing would start at a step a second.
    assert player.locator("body").get_attribute("data-reduced-motion") == "true"
    assert player.locator("body").get_attribute("data-playing") == "false"
    assert player.locator("#speed").input_value() == "1"
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    assert step_of(player) == first - 2
    page.keyboard.press("ArrowRight")
    assert step_of(player) == first - 1
    # Said to a screen reader (a live region), and every picture says which view, prompt and step it is.
    announced = player.locator("#announce")
    assert announced.get_attribute("aria-live") == "polite"
    expect(announced).to_have_text(re.compile(rf"^step {first - 1} of {last}"))
    alts = player.locator("#pictures img").evaluate_all("images => images.map(i => i.alt)")
    assert alts and all("for the prompt “" in alt for alt in alts), alts
    assert any(alt.endswith(f"step {first - 1} of {last}") for alt in alts), alts
    page.keyboard.press(" ")
    assert player.locator("body").get_attribute("data-playing") == "true"
    expect(announced).to_contain_text("Playing from")
    page.keyboard.press(" ")
    assert player.locator("body").get_attribute("data-playing") == "false"
    expect(announced).to_contain_text("Paused: step")
    # Each control of the player is next in the Tab order, its focus drawn too.
    for control in ("back", "play", "forward", "scrub", "speed"):
        page.keyboard.press("Tab")
        assert focused_in(player) == control, f"Tab went to {focused_in(player)!r}, not {control}"
        assert focus_visible(focus_shows(player)), f"{control}: its focus is not drawn"
    page.keyboard.press("Tab")  # and out again: the player keeps no key it does not use (no keyboard trap)
    assert focused_in(player) == "", "Tab stayed in the player"
    student.context.close()

    # The teacher's page, from the keyboard alone: the code typed and sent with Enter, every enabled button
    # reached by Tab, each with its focus drawn.
    teacher = Person(browser, stack)
    teacher.sign_in("Ms Lee")
    desk = teacher.page
    teacher.open("Teacher")
    tab_until(desk, lambda: desk.evaluate("() => document.activeElement.getAttribute('aria-label')") == "Teacher code")
    desk.keyboard.type(TEACHER_CODE)
    desk.keyboard.press("Enter")
    expect(desk.get_by_role("tab", name="Lead the class")).to_be_visible(timeout=WAIT_MS)
    settle(desk)
    desk.locator("body").focus()
    reached: dict[str, bool] = {}
    for _ in range(250):
        desk.keyboard.press("Tab")
        shown = focus_shows(desk)
        if shown["name"]:
            reached.setdefault(shown["name"], focus_visible(shown))
    wanted = ["Pause generation", "Precompute the lessons", "Lead the class", "Show the class map"]
    missing = [name for name in wanted if name not in reached]
    assert missing == [], f"never reached by Tab: {missing}; reached: {sorted(reached)}"
    undrawn = [name for name in wanted if not reached[name]]
    assert undrawn == [], f"focus not drawn on: {undrawn}"
    # The tabs are one stop (the open one); the arrows go from tab to tab, Enter opens one (ARIA's tabs pattern).
    desk.locator("body").focus()
    tab_until(desk, lambda: desk.evaluate("() => document.activeElement.getAttribute('role')") == "tab")
    names = [focus_shows(desk)["name"]]
    for _ in range(3):
        desk.keyboard.press("ArrowRight")
        shown = focus_shows(desk)
        assert focus_visible(shown), f"the tab {shown['name']!r}: its focus is not drawn"
        names.append(shown["name"])
    assert names == ["Lead the class", "Quick check", "Gallery", "Class map"], names
    desk.keyboard.press("ArrowLeft")
    desk.keyboard.press("ArrowLeft")
    desk.keyboard.press("Enter")
    expect(desk.get_by_role("tab", name="Quick check")).to_have_attribute("aria-selected", "true")
    expect(desk.get_by_text("Ask your own question")).to_be_visible()
    teacher.context.close()


def step_of(player: Frame) -> int:
    return int(player.locator("body").get_attribute("data-step"))
