"""A name thief: passing for a classmate with a look-alike name, taking a name over, coming back after Remove.

Through the front end (Streamlit's AppTest, every session at the same address, as
behind a school's network address translation) and through the service (gRPC on
loopback). A browser is its signed cookie: a session that does not send the
holder's cookie is another browser, whatever its address.
"""

from __future__ import annotations

import grpc
import pytest
from streamlit.testing.v1 import AppTest

from tests.security.test_frontend_attacks import APP, class_code, sign_in, student_of

__all__ = ["class_code"]  # the fixture, shared with the other front-end attacks

TAKEN = "already signed in as"
REMOVED_BROWSER = "Your teacher removed you from the class on this browser"


def signed_in_as(at: AppTest) -> str | None:
    return at.session_state["display_name"] if "display_name" in at.session_state else None  # noqa: SIM401


def renew(at: AppTest) -> AppTest:
    """As after a few seconds: the tab renews its hold on its name."""
    at.session_state["name_renewed_at"] = 0.0
    return at.run()


# -- through the front end ------------------------------------------------------


@pytest.mark.parametrize(
    ("look_alike", "refusal"),
    [
        ("\u0410lisha", TAKEN),  # Cyrillic capital A
        ("\uff21lisha", TAKEN),  # fullwidth A
        ("\u0391LISHA", TAKEN),  # Greek capital Alpha, in capitals
        ("  alisha ", TAKEN),  # case and spaces
        ("Alisha\u3164", "invisible"),  # a Hangul filler: a letter that draws nothing
    ],
)
def test_a_look_alike_of_a_classmates_name_is_refused(class_code, lesson_server, look_alike, refusal):
    alisha = sign_in(AppTest.from_file(APP, default_timeout=60).run(), class_code, "Alisha")
    assert signed_in_as(alisha) == "Alisha"
    thief = sign_in(AppTest.from_file(APP, default_timeout=60).run(), class_code, look_alike)
    assert refusal in thief.error[0].value and signed_in_as(thief) is None
    assert signed_in_as(renew(alisha)) == "Alisha"  # the real Alisha keeps her name
    # Removed by the teacher, the name stays refused in every look-alike form.
    classroom = lesson_server.classroom
    lesson_server.call(lambda: classroom.remove_student("", "Alisha"))
    try:
        thief = sign_in(AppTest.from_file(APP, default_timeout=60).run(), class_code, look_alike)
        assert signed_in_as(thief) is None
        assert (refusal if refusal != TAKEN else "Your teacher removed the name") in thief.error[0].value
    finally:
        lesson_server.call(lambda: classroom.remove_student("", "Alisha", let_back=True))


def test_a_look_alike_name_is_the_same_student_to_the_service(class_code):
    ids = set()
    for name in ("Alisha", "\u0410lisha", "\uff21lisha", "ALISHA  "):
        at = AppTest.from_file(APP, default_timeout=60).run()
        at.session_state["display_name"] = name
        ids.add(student_of(at))
    assert len(ids) == 1  # one rate limit, one quick-check answer, one place in the queue


def test_taking_a_name_over_needs_the_browsers_own_cookie(class_code, lesson_server, monkeypatch):
    tomas = sign_in(AppTest.from_file(APP, default_timeout=60).run(), class_code, "Tomas")
    assert signed_in_as(tomas) == "Tomas"
    # A classmate at the same address (the school's one public address), without Tomas's cookie.
    thief = sign_in(AppTest.from_file(APP, default_timeout=60).run(), class_code, "Tomas")
    assert TAKEN in thief.error[0].value and signed_in_as(thief) is None
    assert signed_in_as(renew(tomas)) == "Tomas"  # Tomas was not signed out
    assert "Tomas" in [entry.name for entry in lesson_server.call(lesson_server.classroom.students)]

    # Tomas himself, in a second tab of the same browser: it sends his cookie, and takes his name over.
    import frontend.access.browser_id

    cookie = tomas.session_state[frontend.access.browser_id.STATE_KEY]
    monkeypatch.setattr(frontend.access.browser_id, "cookie_sent", lambda: cookie)
    second_tab = sign_in(AppTest.from_file(APP, default_timeout=60).run(), class_code, "Tomas")
    assert not second_tab.error and signed_in_as(second_tab) == "Tomas"
    assert signed_in_as(renew(tomas)) is None  # the first tab is signed out
    assert "another tab" in tomas.warning[0].value

    # A forged cookie (another id, or a signature made up) is a new browser, not Tomas's.
    browser, _, signature = cookie.partition(".")
    for forged in (f"{browser}.{'0' * len(signature)}", f"{'f' * len(browser)}.{signature}", browser):
        monkeypatch.setattr(frontend.access.browser_id, "cookie_sent", lambda forged=forged: forged)
        thief = sign_in(AppTest.from_file(APP, default_timeout=60).run(), class_code, "Tomas")
        assert TAKEN in thief.error[0].value and signed_in_as(thief) is None


def test_a_removed_student_cannot_come_back_under_another_name(class_code, lesson_server):
    maya = sign_in(AppTest.from_file(APP, default_timeout=60).run(), class_code, "Maya")
    assert signed_in_as(maya) == "Maya"
    classroom = lesson_server.classroom
    lesson_server.call(lambda: classroom.remove_student("", "Maya"))
    try:
        assert signed_in_as(renew(maya)) is None  # signed out
        for other in ("Maya2", "Not Maya"):
            sign_in(maya, class_code, other)  # the same browser, another name
            assert signed_in_as(maya) is None, f"signed back in as {other!r}"
            assert REMOVED_BROWSER in maya.error[0].value
        # A classmate in another browser is not touched.
        classmate = sign_in(AppTest.from_file(APP, default_timeout=60).run(), class_code, "Maya2")
        assert signed_in_as(classmate) == "Maya2"
        students = lesson_server.call(classroom.students)
        assert "Maya" in [entry.name for entry in students if entry.removed]  # the teacher's list
    finally:
        lesson_server.call(lambda: classroom.remove_student("", "Maya", let_back=True))
    sign_in(maya, class_code, "Maya")  # let back: the same browser signs in again
    assert not maya.error and signed_in_as(maya) == "Maya"


# -- through the service ----------------------------------------------------------


@pytest.fixture
def roster_client(lesson_server):
    from services.common.client import ClassroomClient, ClientSettings

    client = ClassroomClient(ClientSettings(inference_addr=lesson_server.address), class_name="thief-7")
    yield client
    client.close()


def test_the_service_holds_a_name_by_browser_not_by_address(roster_client):
    from services.common.client import StudentError

    roster_client.join_class("Ines", "ines-tab-1", "10.0.0.5", browser="browser-ines")
    with pytest.raises(StudentError, match=TAKEN) as caught:  # the same address, another browser
        roster_client.join_class("\u0406nes", "ines-tab-2", "10.0.0.5", browser="browser-thief")
    assert caught.value.code == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(StudentError, match=TAKEN):  # no browser at all: never a takeover
        roster_client.join_class("Ines", "ines-tab-3", "10.0.0.5")
    roster_client.join_class("ines", "ines-tab-4", "10.0.0.9", browser="browser-ines")  # her browser, anywhere
    with pytest.raises(StudentError, match="another tab"):
        roster_client.join_class("Ines", "ines-tab-1", "10.0.0.5", browser="browser-ines")


def test_remove_removes_the_browser_until_the_teacher_lets_it_back(roster_client, lesson_server):
    from services.common.client import StudentError

    classroom = lesson_server.classroom
    roster_client.join_class("Maya", "maya-tab-1", "10.0.0.5", browser="browser-maya")
    lesson_server.call(lambda: classroom.remove_student("thief-7", "MAYA"))
    for name in ("Maya2", "Someone Else"):
        with pytest.raises(StudentError, match=REMOVED_BROWSER):
            roster_client.join_class(name, "maya-tab-2", "10.0.0.5", browser="browser-maya")
    roster_client.join_class("Maya2", "maya-tab-3", "10.0.0.5", browser="browser-classmate")  # the same address
    students = lesson_server.call(classroom.students)
    assert [(s.name, s.removed) for s in students if s.classroom == "thief-7" and s.removed] == [("Maya", True)]
    assert lesson_server.call(lambda: classroom.remove_student("thief-7", "Maya", let_back=True))[0]
    roster_client.join_class("Maya", "maya-tab-4", "10.0.0.5", browser="browser-maya")


def test_a_name_must_pass_the_blocklist(settings):
    from services.common.client import ClassroomClient, ClientSettings, StudentError
    from services.inference.moderation import DEFAULT_BLOCKLIST
    from tests.support.servers import running_server

    config = settings.model_copy(update={"redis_url": "", "blocklist": DEFAULT_BLOCKLIST})
    with running_server(config) as server:
        client = ClassroomClient(ClientSettings(inference_addr=server.address))
        # Small capitals, an accent, a digit for a letter: the blocklist's own folding, not a copy of it.
        for name in ("sexy sam", "\ua731\u1d07x", "N\u00fcde Nick", "pr0n"):
            with pytest.raises(StudentError, match="This name can't be used in class") as caught:
                client.join_class(name, "tab-1", "10.0.0.5", browser="browser-b")
            assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
        client.join_class("Sam from Essex", "tab-1", "10.0.0.5", browser="browser-b")  # whole words only
        client.close()
