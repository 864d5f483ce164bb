"""A markup injector against every page (AppTest): hostile names, prompts, quick checks and gallery captions.

The same hostile strings (tests/security/hostile.py) go in as students' names, their
prompts and gallery pictures, and a teacher's quick check; each page that shows them is
drawn by AppTest against a real service and Redis, and every field Streamlit reads as
markdown is parsed: the words must be there as typed, and the injected text must make no
link, picture, tag, heading, math, colour or emoji. The Chromium check of the same
(tests/security/test_markup_browser.py) renders them for real.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from html.parser import HTMLParser

import pytest
from streamlit.testing.v1 import AppTest

from frontend.drawing.views import plain, said
from services.common.client import ClassroomClient, StudentError
from tests.frontend.conftest import ROOT
from tests.integration.helpers import collect, request
from tests.security.hostile import HOSTILE, REFUSED, SHOWN, injected, rendered_text, shown_as
from tests.support.frontend import page_file
from tests.support.servers import client_for, running_server

CODE = "heron-7"
# The fields of Streamlit's elements that its front end reads as markdown, and those it shows as they are.
MARKDOWN_FIELDS = {"body", "label", "text", "options", "content", "caption", "help"}
AS_IS = {("text", "body"), ("selectbox", "options"), ("code", "body")}


# -- the one function, on its own -----------------------------------------------------------


@pytest.mark.parametrize(("what", "text"), HOSTILE, ids=[what for what, _ in HOSTILE])
def test_plain_markdown_shows_the_words_and_makes_no_markup(what, text):
    words, markup = rendered_text(f"Removed {plain(text)}: their tab is signed out.")
    assert markup == [], what
    assert words == f"Removed {shown_as(text)}: their tab is signed out."


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.words = ""

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.words += data


@pytest.mark.parametrize(("what", "text"), HOSTILE, ids=[what for what, _ in HOSTILE])
def test_plain_html_and_plain_text_show_the_words_and_make_no_tag(what, text):
    parsed = _Tags()
    parsed.feed(f'<figcaption title="{plain(text, "html")}">{plain(text, "html")}</figcaption>')
    parsed.close()
    assert parsed.tags == ["figcaption"], what
    assert parsed.words == shown_as(text)
    assert plain(text, "text") == shown_as(text)  # a select box or a table shows it as it is, hidden characters gone


@pytest.mark.parametrize(("what", "text"), SHOWN, ids=[what for what, _ in SHOWN])
def test_a_refusal_that_quotes_a_name_shows_it_as_typed(what, text):
    from services.inference.refusals import NameRemoved, NameTaken

    for refusal in (NameTaken(text), NameRemoved(text)):
        words, markup = rendered_text(said(refusal.sentence))
        assert markup == [], what
        assert words == refusal.sentence
    assert said("Please wait 10 seconds, then try again.") == "Please wait 10 seconds, then try again."


@pytest.mark.parametrize("quoted", ["a cat\n===\nb", "a cat\n\n    an indented block", "a cat\n---\nb"])
def test_a_sentence_quoting_several_lines_makes_no_block(quoted):
    words, markup = rendered_text(said(f"The picture of '{quoted}' could not be made."))
    assert markup == [], quoted
    assert words == f"The picture of '{' '.join(quoted.split())}' could not be made."


def test_whitespace_cannot_start_a_block():
    words, markup = rendered_text(plain("a name\n\n# a heading\n- a list\n> a quote"))
    assert markup == [] and words == "a name # a heading - a list > a quote"


# -- every page, with the class full of them -------------------------------------------------


def _strings(message) -> Iterator[tuple[str, str]]:
    """Every string field of a protobuf message, nested ones too, as (field name, value)."""
    for field, value in message.ListFields():
        values = [value] if isinstance(value, str) or not hasattr(value, "__len__") else list(value)
        for one in values:
            if isinstance(one, str):
                yield field.name, one
            elif hasattr(one, "ListFields"):
                yield from _strings(one)


def page_text(at: AppTest) -> tuple[str, list[str]]:
    """All the words the page shows, and the markup that injected text made (where, what)."""
    seen: list[str] = []
    problems: list[str] = []
    for node in at._tree:
        proto = getattr(node, "proto", None)
        if proto is None or not hasattr(proto, "ListFields"):
            continue
        for name, value in _strings(proto):
            if node.type == "html":  # the app's own HTML (st.html): no typed text may reach it
                if injected(value):
                    problems.append(f"html {value!r}")
            elif (node.type, name) in AS_IS:
                seen.append(value)
            elif name in MARKDOWN_FIELDS:
                words, markup = rendered_text(value)
                seen.append(words)
                if markup and injected(value):
                    problems.append(f"{node.type}.{name} {value!r}: {markup}")
    return "\n".join(seen), problems


def assert_plain(at: AppTest, texts: list[str]) -> None:
    """The page shows each of `texts` as typed, and none of them made markup."""
    assert not at.exception, at.exception
    words, problems = page_text(at)
    assert problems == []
    missing = [text for text in texts if shown_as(text) not in words]
    assert missing == []


@pytest.fixture(scope="module")
def hostile_class(settings, tmp_path_factory) -> Iterator[ClassroomClient]:
    """A service whose class is full of hostile text: names signed in, pictures shared, the front end pointed at it."""
    from frontend.client import get_client
    from frontend.material.examples import examples
    from frontend.stream.store import lesson_store
    from frontend.together.student_side import class_watcher
    from tests.support.redis_server import RedisServer

    redis = RedisServer(tmp_path_factory.mktemp("plain-redis")).start()
    config = settings.model_copy(update={"redis_url": redis.url, "teacher_code": CODE, "max_per_address": 0})
    caches = (get_client, examples, lesson_store, class_watcher)
    with running_server(config) as server, pytest.MonkeyPatch.context() as patch:
        patch.setenv("CLASSROOM_INFERENCE_ADDR", server.address)
        patch.setenv("CLASSROOM_TEACHER_CODE", CODE)
        for cached in caches:
            cached.clear()
        client = client_for(server.address)
        client.set_gallery_approval(CODE, False)  # shared pictures go straight to the gallery
        for number, (what, text) in enumerate(HOSTILE):
            student, picture = f"student-{number}", request(text, seed=number, num_inference_steps=2)
            picture.width = picture.height = 64
            if what in REFUSED:  # never reaches a page: the service says why
                with pytest.raises(StudentError):
                    client.join_class(text, f"session-{number}")
                with pytest.raises(StudentError):
                    collect(client.generate(picture, student))
                continue
            client.join_class(text, f"session-{number}", browser=f"browser-{number}")  # a classmate's browser
            key = collect(client.generate(picture, student, name=text)).status.trajectory_key
            client.share_to_gallery(key, student, text)
        yield client
        client.close()
        for cached in caches:
            cached.clear()
    redis.stop()


def ask(client: ClassroomClient, question: str, choices: tuple[str, ...]) -> None:
    client.ask_quick_check(CODE, question=question, choices=choices, answer=1)


def test_a_hidden_character_never_reaches_a_quick_check(hostile_class):
    refused = next(text for what, text in HOSTILE if what in REFUSED)
    with pytest.raises(StudentError):
        ask(hostile_class, refused, ("yes", "no"))
    with pytest.raises(StudentError):
        ask(hostile_class, "Which?", (refused, "no"))


def test_the_teacher_page_shows_names_prompts_and_answers_as_typed(hostile_class):
    texts = [text for _, text in SHOWN]
    at = AppTest.from_file(str(page_file("teacher")), default_timeout=60).run()
    at.text_input[0].input(CODE)
    at.button[0].click().run()
    for start in range(0, len(texts), 5):  # a question and its answers, five strings at a time
        ask(hostile_class, texts[start], (*texts[start : start + 5], "none of these"))
        at.run()
        assert_plain(at, texts[start : start + 5])
    assert_plain(at, texts)  # the roster (names) and the gallery's review (prompts, names)

    # Remove and Let back say the name in a toast, which reads markdown.
    for text in texts:
        at.button(key=f"teacher-remove--{text}").click().run()
        assert [toast.value for toast in at.toast] == [f"Removed {plain(text)}: their tab is signed out."]
        assert_plain(at, [f"Removed {text}: their tab is signed out."])
        at.button(key=f"teacher-let-back--{text}").click().run()
        assert_plain(at, [f"{text} may sign in again."])


def test_the_gallery_shows_prompts_and_names_as_typed(hostile_class):
    at = AppTest.from_file(str(page_file("gallery")), default_timeout=60).run()
    assert_plain(at, [text for _, text in SHOWN] + [f"by {text} · seed" for _, text in SHOWN])
    at.button[0].click().run()  # one opened in the player: its prompt is the heading
    assert_plain(at, [text for _, text in SHOWN])


def _class_banner() -> None:
    from frontend.together.student_side import class_banner

    class_banner(on_follow_page=False)


def test_a_students_quick_check_shows_the_question_and_answers_as_typed(hostile_class):
    from frontend.together.student_side import class_watcher

    texts = [text for _, text in SHOWN]
    for start in range(0, len(texts), 5):
        asked = texts[start : start + 5]
        check = hostile_class.ask_quick_check(CODE, question=asked[0], choices=(*asked, "none of these"), answer=1)
        deadline = time.monotonic() + 30
        while class_watcher().state() is None or class_watcher().state().quick_check.id != check.id:
            assert time.monotonic() < deadline, "the front end never heard of the question"
            time.sleep(0.05)
        at = AppTest.from_function(_class_banner, default_timeout=60).run()
        assert_plain(at, asked)  # the question, and each answer as a button's label
        at.button[0].click().run()  # answers A
        hostile_class.reveal_quick_check(CODE)
        deadline = time.monotonic() + 30
        while not class_watcher().state().quick_check.revealed:
            assert time.monotonic() < deadline, "the front end never heard of the reveal"
            time.sleep(0.05)
        at.run()
        assert_plain(at, [f"The answer is B: {asked[1]}."])


def test_signing_in_as_a_hostile_name_a_classmate_holds_says_so_with_the_name_as_typed(hostile_class, monkeypatch):
    monkeypatch.setenv("CLASSROOM_CLASS_CODE", "owl-42")
    for number, (_, text) in enumerate(SHOWN):  # held by classmates again (the teacher's test removed them)
        hostile_class.join_class(text, f"again-{number}", browser=f"classmate-{number}")
    at = AppTest.from_file(str(ROOT / "frontend" / "app.py"), default_timeout=60).run()
    for _, text in SHOWN:
        at.text_input[0].input("owl-42")
        at.text_input[1].input(text)
        at.button[0].click().run()
        assert len(at.error) == 1  # "already signed in as '...' on another computer"
        assert_plain(at, [text])


def test_the_playground_shows_a_typed_prompt_as_typed(hostile_class):
    prompt = " ".join(text for _, text in SHOWN)
    at = AppTest.from_file(str(page_file("playground")), default_timeout=120).run()
    at.text_area[0].input(prompt)
    at.slider[0].set_value(2)
    for box in at.selectbox:
        if box.label in ("Width", "Height"):
            box.set_value(64)
    next(b for b in at.button if b.label == "Generate").click().run()
    assert not at.error
    assert_plain(at, [prompt])
