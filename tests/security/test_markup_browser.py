"""A markup injector in a real Chromium: hostile names, prompts, a quick check and gallery captions on every page.

The class is filled with the hostile strings of tests/security/hostile.py (names signed
in, pictures shared to the gallery, a quick check open); a student signs in with the
name `![](http://evil.test/p.png)`, answers, opens the gallery and the Playground; the
teacher opens every tab of the teacher's page and presses Remove and Let back, whose
toasts say the name. Everywhere: no request leaves for another host than the school's
server, no element (picture, link, script, heading, math) is made from the injected
text, and the words read as typed. One service, one front end and one browser for the
module.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Frame, Locator, Page, expect
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests.integration.helpers import collect, request
from tests.security.hostile import EVIL_HOST, HOSTILE, SHOWN, WORD_JOINER, shown_as
from tests.support.frontend import launched_chromium, running_frontend
from tests.support.servers import client_for, running_server

CLASS_CODE, TEACHER_CODE = "owl-42", "heron-7"
STUDENT = dict(HOSTILE)["a markdown image"]  # the name that fetched a picture from the teacher's browser
HEADING = dict(HOSTILE)["a heading"]  # a name that starts its toast: a heading there, were it markdown
WAIT_MS = 60_000
# Elements the injected text would have made: pictures and links to the outside host (a heading's own
# anchor, "#http-evil-test...", stays on the page), tags, a heading from "# ...", math from "$...$", the
# emoji of ":smile:"; and a script that ran would have set the title to 1. Checked in every frame of the
# page (the player, a component, is one).
INJECTED_ELEMENTS = """() => {
    const made = [...document.querySelectorAll(
        'img[src*="evil"], a[href*="evil"]:not([href^="#"]), [onerror], iframe[src*="evil"], '
        + 'iframe[srcdoc*="evil"], object, embed, .katex, mjx-container'
    )].map(e => e.outerHTML.slice(0, 160));
    made.push(...[...document.scripts].filter(s => s.textContent.includes("document.title"))
        .map(s => "script: " + s.textContent));
    made.push(...[...document.querySelectorAll("h1, h2, h3, h4, h5, h6")]
        .filter(h => h.textContent.trim().startsWith("I am the teacher")).map(h => "heading: " + h.outerHTML));
    if (document.body.innerText.includes("\\u{1F604}")) made.push("the emoji of :smile:");
    if (document.title === "1") made.push("a script ran: the title is 1");
    return made;
}"""
# Every toast the page shows, kept as it appeared (a toast leaves after 4 s, perhaps before a busy test looks).
KEEP_TOASTS = """window.__toasts = [];
new MutationObserver(() => {
    for (const toast of document.querySelectorAll('[data-testid="stToast"]')) {
        const seen = {text: toast.innerText, html: toast.innerHTML};
        if (!window.__toasts.some(t => t.html === seen.html)) window.__toasts.push(seen);
    }
}).observe(document, {childList: true, subtree: true, characterData: true});"""
MARKUP_IN_TOAST = re.compile(r"<(img|a|script|h[1-6]|iframe)\b", re.IGNORECASE)


@pytest.fixture(scope="module")
def class_address(settings, tmp_path_factory) -> Iterator[str]:
    """A service with a Redis, its class full of hostile names, gallery pictures and an open quick check."""
    from tests.support.redis_server import RedisServer

    redis = RedisServer(tmp_path_factory.mktemp("markup-redis")).start()
    config = settings.model_copy(update={"redis_url": redis.url, "teacher_code": TEACHER_CODE, "max_per_address": 0,
                                         "default_steps": 2})  # fmt: skip
    with running_server(config) as server:
        client = client_for(server.address)
        client.set_gallery_approval(TEACHER_CODE, False)  # shared pictures go straight to the gallery
        for number, (_, text) in enumerate(SHOWN):
            if text != STUDENT:  # that name is the browser's own
                client.join_class(text, f"session-{number}")
            picture = request(text, seed=number, num_inference_steps=2)
            picture.width = picture.height = 64
            key = collect(client.generate(picture, f"student-{number}", name=text)).status.trajectory_key
            client.share_to_gallery(key, f"student-{number}", text)
        choices = tuple(text for _, text in SHOWN[:6])
        question = " ".join(text for _, text in SHOWN[6:])
        client.ask_quick_check(TEACHER_CODE, question=question, choices=choices, answer=1)
        client.close()
        yield server.address
    redis.stop()


@pytest.fixture(scope="module")
def frontend_url(class_address: str, tmp_path_factory) -> Iterator[str]:
    env = {
        "CLASSROOM_INFERENCE_ADDR": class_address,
        "CLASSROOM_CLASS_CODE": CLASS_CODE,
        "CLASSROOM_TEACHER_CODE": TEACHER_CODE,
    }
    with running_frontend(env, tmp_path_factory.mktemp("frontend") / "streamlit.log") as url:
        yield url


@pytest.fixture(scope="module")
def outside() -> list[str]:
    """Every request the browser sent to a host other than the school's server (127.0.0.1)."""
    return []


@pytest.fixture(scope="module")
def browser(frontend_url: str) -> Iterator[Browser]:
    with launched_chromium() as browser:
        yield browser


def person(browser: Browser, url: str, outside: list[str]) -> tuple[BrowserContext, Page]:
    context = browser.new_context(viewport={"width": 1300, "height": 1000})
    context.on("request", lambda sent: outside.append(sent.url) if _outside(sent.url) else None)
    context.add_init_script(KEEP_TOASTS)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(url)
    return context, page


def _outside(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme not in ("data", "blob") and parts.hostname not in ("127.0.0.1", "localhost")


def words(page: Page) -> str:
    """The page's words as a reader sees them (the word joiners that break links are invisible)."""
    return page.evaluate("document.body.innerText").replace(WORD_JOINER, "")


def made_in(frame: Frame) -> list[str]:
    """What the injected text made in one frame, read once the frame has a document.

    A component's frame that the page is replacing has no body for a moment: it is read once it has one, and
    one that is gone by then (detached) holds nothing any more.
    """
    try:
        frame.wait_for_function("document.body !== null", timeout=10_000)
        return frame.evaluate(INJECTED_ELEMENTS)
    except PlaywrightError:
        if frame.is_detached():
            return []
        raise


def assert_plain(page: Page, outside: list[str], texts: list[str]) -> None:
    """No element made from the injected text, no request to the outside, and each of `texts` shown as typed."""
    assert [made for frame in page.frames for made in made_in(frame)] == []  # components too
    assert outside == []
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # a long word wraps
    shown = " ".join(words(page).split())
    assert [text for text in texts if shown_as(text) not in shown] == []


def click_until_confirmed(page: Page, button: Locator, sentence: str, tries: int = 3) -> None:
    """Click `button` (in the dashboard's fragment, redrawn every 3 s) until its confirmation shows.

    On a loaded machine the fragment is nearly always running, and a click that lands while it runs may be
    dropped by Streamlit; a teacher then clicks again, as this does while the button is still there.
    """
    for attempt in range(tries):
        button.click()
        try:
            confirmed(page, sentence, timeout_ms=20_000)
            return
        except PlaywrightTimeoutError:
            if button.count() == 0:  # the click was taken (the button went with it): its confirmation is coming
                confirmed(page, sentence)
                return
            if attempt == tries - 1:
                raise


def confirmed(page: Page, sentence: str, timeout_ms: float = 60_000) -> None:
    """Wait for the dashboard's confirmation line that says `sentence` as typed; no toast shown made markup of it.

    The line stays until the next confirmation; its toast leaves after 4 s and, sent just before the fragment's
    next run, may never be drawn, so the line is what the test waits for.
    """
    page.wait_for_function(
        "words => document.body.innerText.replaceAll('\\u2060', '').includes(words)", arg=sentence, timeout=timeout_ms
    )
    toasts = [t["html"] for t in page.evaluate("window.__toasts")]
    assert [html for html in toasts if MARKUP_IN_TOAST.search(html)] == []


def test_the_students_pages_show_the_hostile_text_as_typed(browser, frontend_url, outside):
    context, page = person(browser, frontend_url, outside)
    page.get_by_label("Class code").fill(CLASS_CODE)
    page.get_by_label("Your name").fill(STUDENT)
    page.get_by_role("button", name="Start").click()
    # The welcome page, with the quick check above it: the question, its answers as buttons.
    expect(page.get_by_text("Quick check:")).to_be_visible()
    # Its answers are drawn after the question (in columns): every one on screen before the page is read.
    expect(page.get_by_role("button").filter(has_text="F:")).to_have_count(1)  # the sixth of its six answers
    assert_plain(page, outside, [text for _, text in SHOWN])
    page.get_by_role("button").filter(has_text="A:").first.click()
    expect(page.get_by_text("Answered.")).to_be_visible()

    page.get_by_test_id("stSidebarNavItems").get_by_role("link", name="Class gallery").click()
    expect(page.get_by_role("button", name="Open in the player")).to_have_count(len(SHOWN))
    assert_plain(page, outside, [text for _, text in SHOWN])

    page.get_by_test_id("stSidebarNavItems").get_by_role("link", name="Playground").click()
    typed = " ".join(text for _, text in SHOWN) + " " + "Pneumono" * 40  # and a word of 320 letters
    page.get_by_label("Prompt", exact=True).fill(typed)
    for side in ("Width", "Height"):  # a small picture: the Playground's page, not the model, is under test
        page.get_by_label(side).click()
        page.get_by_role("option", name="64", exact=True).click()
    page.get_by_role("button", name="Generate").click()
    expect(page.get_by_text("The whole prompt:")).to_be_visible()
    assert_plain(page, outside, [typed])
    context.close()


def test_the_teachers_page_shows_names_prompts_and_answers_as_typed(browser, class_address, frontend_url, outside):
    client = client_for(class_address)
    if STUDENT not in {student.name for student in client.classroom(TEACHER_CODE).students}:
        client.join_class(STUDENT, "session-of-the-browser")  # run on its own: as the student test's browser would
    client.close()
    context, page = person(browser, frontend_url, outside)
    page.get_by_label("Class code").fill(CLASS_CODE)
    page.get_by_label("Your name").fill("Ms Lee")
    page.get_by_role("button", name="Start").click()
    page.get_by_test_id("stSidebarNavItems").get_by_role("link", name="Teacher").click()
    page.get_by_label("Teacher code").fill(TEACHER_CODE)
    page.get_by_role("button", name="Open").click()
    expect(page.get_by_role("heading", name="Signed in")).to_be_visible()
    assert_plain(page, outside, [text for _, text in SHOWN])  # the roster
    for tab, drawn in (("Quick check", "answer(s)"), ("Gallery", "in the gallery"), ("Class map", "Each line")):
        page.get_by_role("tab", name=tab).click()
        expect(page.get_by_text(drawn).first).to_be_visible()
        assert_plain(page, outside, [text for _, text in SHOWN] if tab != "Class map" else [])

    # Remove and Let back: their confirmations say the name.
    for name in (STUDENT, HEADING):
        row = page.get_by_test_id("stHorizontalBlock").filter(has=page.get_by_text(name, exact=True))
        removed = f"Removed {name}: their tab is signed out."
        click_until_confirmed(page, row.get_by_role("button", name="Remove"), removed)
        assert_plain(page, outside, [])
        row = page.get_by_test_id("stHorizontalBlock").filter(has=page.get_by_text(f"{name}: removed", exact=True))
        click_until_confirmed(page, row.get_by_role("button", name="Let back"), f"{name} may sign in again.")
        assert_plain(page, outside, [])
    assert EVIL_HOST not in " ".join(outside)
    context.close()
