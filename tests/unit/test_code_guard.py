"""The code guard slows down the guesser, never the class behind one school address."""

from __future__ import annotations

import pytest

from frontend.access import guard
from frontend.access.guard import FREE_TRIES, CodeGuard

SCHOOL = "203.0.113.7"  # every student of the class behind one address translation


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(guard.time, "monotonic", lambda: now[0])
    return now


def test_a_guessing_tab_waits_and_its_classmates_at_the_same_address_do_not(clock):
    codes = CodeGuard()
    for _ in range(FREE_TRIES):
        codes.wrong("class", "tab-of-the-guesser", SCHOOL)
    assert codes.wait_s("class", "tab-of-the-guesser", SCHOOL) == pytest.approx(10.0)
    assert codes.wait_s("class", "tab-of-a-classmate", SCHOOL) == 0.0
    codes.wrong("class", "tab-of-the-guesser", SCHOOL)
    assert codes.wait_s("class", "tab-of-the-guesser", SCHOOL) == pytest.approx(20.0)


def test_guessing_the_class_code_never_slows_the_teachers_page(clock):
    codes = CodeGuard(address_limit=10)
    for tab in range(20):
        codes.wrong("class", f"tab-{tab}", SCHOOL)
    assert codes.wait_s("class", "new-tab", SCHOOL) > 0  # a script opening a tab per guess is stopped
    assert codes.wait_s("teacher", "new-tab", SCHOOL) == 0.0


def test_the_address_limit_stops_a_script_for_the_window_only(clock):
    codes = CodeGuard(address_limit=3, address_window_s=600.0)
    for tab in range(3):
        codes.wrong("class", f"tab-{tab}", SCHOOL)
        clock[0] += 100.0
    # The first wrong try was 300 s ago: the window frees it 300 s from now.
    assert codes.wait_s("class", "another-tab", SCHOOL) == pytest.approx(300.0)
    assert codes.wait_s("class", "another-tab", "198.51.100.1") == 0.0  # another school
    clock[0] += 300.0
    assert codes.wait_s("class", "another-tab", SCHOOL) == 0.0


def test_the_default_address_limit_is_above_what_a_class_mistypes():
    # 200 students signing in together, each mistyping twice, stay below it.
    codes = CodeGuard()
    for student in range(200):
        for _ in range(2):
            codes.wrong("class", f"tab-{student}", SCHOOL)
    assert codes.wait_s("class", "tab-of-the-last", SCHOOL) == 0.0


def test_a_right_code_clears_the_tabs_count(clock):
    codes = CodeGuard()
    for _ in range(FREE_TRIES - 1):
        codes.wrong("class", "tab", SCHOOL)
    codes.right("class", "tab")
    codes.wrong("class", "tab", SCHOOL)
    assert codes.wait_s("class", "tab", SCHOOL) == 0.0


def test_a_script_filling_the_address_window_does_not_keep_out_browsers_that_knew_the_code(clock):
    codes = CodeGuard(address_limit=10)
    codes.right("class", "browser-of-a-student")  # signed in this morning
    codes.right("teacher", "browser-of-the-teacher")
    for tab in range(10):  # a script at the school's address, a new session per guess, both codes
        codes.wrong("class", f"script-{tab}", SCHOOL)
        codes.wrong("teacher", f"script-{tab}", SCHOOL)
    assert codes.wait_s("class", "script-new", SCHOOL) > 0  # the script is stopped
    assert codes.wait_s("class", "browser-of-a-student", SCHOOL) == 0.0  # a reload signs straight in again
    assert codes.wait_s("teacher", "browser-of-the-teacher", SCHOOL) == 0.0  # the teacher's new tab too
    # Knowing the class code lets no browser past the teacher's count.
    assert codes.wait_s("teacher", "browser-of-a-student", SCHOOL) > 0
    # Its own count still holds a browser that knew the code and then guesses.
    for _ in range(FREE_TRIES):
        codes.wrong("class", "browser-of-a-student", SCHOOL)
    assert codes.wait_s("class", "browser-of-a-student", SCHOOL) == pytest.approx(10.0)


def test_the_browsers_remembered_are_bounded(clock, monkeypatch):
    monkeypatch.setattr(guard, "KNOWN_KEPT", 3)
    codes = CodeGuard(address_limit=1)
    for browser in range(5):
        codes.right("class", f"browser-{browser}")
    codes.wrong("class", "script", SCHOOL)
    assert codes.wait_s("class", "browser-0", SCHOOL) > 0  # forgotten: the oldest went first
    assert codes.wait_s("class", "browser-4", SCHOOL) == 0.0


def test_the_counts_are_bounded_and_a_waiting_guesser_is_kept(clock, monkeypatch):
    monkeypatch.setattr(guard, "COUNTS_KEPT", 50)
    codes = CodeGuard()
    for _ in range(FREE_TRIES):
        codes.wrong("class", "the-guesser", SCHOOL)
    for attempt in range(200):  # a script with no cookie: a new session at each try, within two seconds
        clock[0] += 0.01
        codes.wrong("class", f"no-cookie-{attempt}", SCHOOL)
    assert len(codes._sessions) <= 51
    assert codes.wait_s("class", "the-guesser", SCHOOL) > 0  # still waiting: kept
    for machine in range(60):  # many machines, once each; their windows then run out
        codes.wrong("class", f"machine-{machine}", f"10.0.0.{machine}")
    clock[0] += guard.ADDRESS_WINDOW_S + 1
    codes.wrong("class", "late", "10.0.1.1")
    assert list(codes._addresses) == [("class", "10.0.1.1")]
