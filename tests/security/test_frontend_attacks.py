"""Attacks through the front end (Streamlit's AppTest against a real inference service): codes and names."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from tests.frontend.conftest import ROOT

APP = str(ROOT / "frontend" / "app.py")


@pytest.fixture
def class_code(frontend_env, monkeypatch):
    from frontend.access.guard import code_guard

    monkeypatch.setenv("CLASSROOM_CLASS_CODE", "owl-42")
    code_guard.clear()
    yield "owl-42"
    code_guard.clear()


def sign_in(at: AppTest, code: str, name: str) -> AppTest:
    at.text_input[0].input(code)
    at.text_input[1].input(name)
    at.button[0].click().run()
    return at


def test_guessing_the_class_code_slows_down_then_the_right_code_still_works(class_code):
    at = AppTest.from_file(APP, default_timeout=60).run()
    for guess in range(5):
        sign_in(at, f"owl-{guess}", "Robin")
        assert [e.value for e in at.error] == ["That class code is not right. Ask your teacher for it."]
    # The sixth try, even with the right code, waits: a script cannot try 300 codes in seconds.
    sign_in(at, class_code, "Robin")
    assert "Too many wrong codes" in at.error[0].value
    assert "display_name" not in at.session_state


def test_a_guesser_does_not_keep_a_classmate_or_the_teacher_out(class_code, monkeypatch):
    monkeypatch.setenv("CLASSROOM_TEACHER_CODE", "heron-teacher-7")
    guesser = AppTest.from_file(APP, default_timeout=60).run()
    for guess in range(8):
        sign_in(guesser, f"owl-{guess}", "Robin")
    assert "Too many wrong codes" in guesser.error[0].value
    # A classmate in another tab signs in at once (today's count was one for the whole process).
    classmate = AppTest.from_file(APP, default_timeout=60).run()
    sign_in(classmate, class_code, "Ada")  # a name of its own: the browser test's Alex may still hold "Alex"
    assert not classmate.error and classmate.session_state["display_name"] == "Ada"
    # And the teacher's code is taken at once (this test's service has no teacher code: its refusals are left aside).
    classmate.switch_page("screens/teacher.py").run()
    classmate.text_input[0].input("heron-teacher-7")
    classmate.button[0].click().run()
    assert not [e.value for e in classmate.error if "Too many" in e.value or "not right" in e.value]
    assert classmate.session_state["teacher_code"] == "heron-teacher-7"


@pytest.mark.parametrize(
    ("name", "problem"),
    [("Sam\u202eevil", "invisible or control"), ("Ms\u200bRivera", "invisible"), ("Sam\x1b[2J", "invisible")],
)
def test_names_that_would_deceive_the_teacher_are_refused(class_code, name, problem):
    # (The name box takes at most 40 characters; the service refuses longer names a script sends.)
    at = AppTest.from_file(APP, default_timeout=60).run()
    sign_in(at, class_code, name)
    assert problem in at.error[0].value and "display_name" not in at.session_state


def test_signing_in_again_with_the_same_name_is_the_same_student(class_code, monkeypatch):
    import frontend.access.browser_id

    ids = []
    for _ in range(2):  # two browser sessions (a reload)
        at = AppTest.from_file(APP, default_timeout=60).run()
        sign_in(at, class_code, "Robin")
        assert not at.error
        at.switch_page("screens/lessons/words.py").run()
        ids.append(student_of(at))
        cookie = at.session_state[frontend.access.browser_id.STATE_KEY]
        monkeypatch.setattr(frontend.access.browser_id, "cookie_sent", lambda cookie=cookie: cookie)  # the same browser
    other = AppTest.from_file(APP, default_timeout=60).run()
    sign_in(other, class_code, "Ash")
    other.switch_page("screens/lessons/words.py").run()
    assert ids[0] == ids[1] != student_of(other)


def student_of(at: AppTest) -> str:
    """The student id this session's requests carry, as the front end computes it."""
    from unittest import mock

    import frontend.client

    with mock.patch.object(frontend.client.st, "session_state", at.session_state):
        return frontend.client.student_id()


def test_a_prompt_is_shown_as_typed_never_as_markdown():
    from frontend.drawing.views import plain

    forged = "[Your session expired: sign in here](http://example.invalid) ![x](y) :red[alarm] **loud**"
    shown = plain(forged)
    # Every character that would make a link, an image, a style or a colour is escaped.
    for mark in ("](", "![", ":red[", "**"):
        assert mark not in shown
    # It reads as typed: only backslashes and invisible word joiners (which break autolinks) were added.
    assert shown.replace("\\", "").replace("\u2060", "") == forged


def test_a_picture_that_does_not_decode_is_a_sentence():
    from frontend.client import StudentError
    from frontend.stream.wire import UNREADABLE_PICTURE, _picture
    from services.common.api import pb

    with pytest.raises(StudentError, match=UNREADABLE_PICTURE):
        _picture(pb.Image(mime_type="image/png", data=b"\x89PNG\r\n\x1a\n but the rest is gone"))


def test_a_name_held_on_another_computer_cannot_be_taken(class_code, lesson_server):
    from frontend.client import get_client

    get_client().join_class("Jordan", "a-tab-on-another-computer", "10.0.0.9")
    at = AppTest.from_file(APP, default_timeout=60).run()
    sign_in(at, class_code, "jordan")
    assert "already signed in as 'jordan' on another computer" in at.error[0].value
    assert "display_name" not in at.session_state  # still on the sign-in page


def test_a_name_the_teacher_removes_is_signed_out(class_code, lesson_server):
    at = AppTest.from_file(APP, default_timeout=60).run()
    sign_in(at, class_code, "Mallory")
    assert not at.error and at.session_state.display_name == "Mallory"
    classroom = lesson_server.classroom
    assert "Mallory" in [entry.name for entry in lesson_server.call(classroom.students)]  # the teacher sees the name
    lesson_server.call(lambda: classroom.remove_student("", "Mallory"))
    at.session_state["name_renewed_at"] = 0.0  # as after a few seconds: the tab renews its hold
    at.run()
    assert "display_name" not in at.session_state
    assert "Your teacher removed the name 'Mallory'" in at.warning[0].value  # told why, on the sign-in page
    sign_in(at, class_code, "Mallory")
    assert "Your teacher removed the name" in at.error[0].value
    lesson_server.call(lambda: classroom.remove_student("", "Mallory", let_back=True))
