"""Who is in class: one live session per name (held by its browser), a few names per computer, names removed."""

from __future__ import annotations

import pytest

from services.inference.classroom.roster import Roster
from services.inference.moderation import Blocklist
from services.inference.refusals import (
    BlockedName,
    BrowserRemoved,
    NameRemoved,
    NameTaken,
    SignedInElsewhere,
    TooManyNames,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_a_name_held_on_one_computer_is_refused_on_another(clock):
    roster = Roster(clock=clock)
    roster.join("7B", "Robin", "tab-1", "10.0.0.5")
    with pytest.raises(NameTaken, match="already signed in as 'robin'"):
        roster.join("7B", "robin", "tab-9", "10.0.0.6")  # the same name, whatever its case
    roster.join("8C", "Robin", "tab-9", "10.0.0.6")  # another class has its own Robin
    assert [(e.classroom, e.name) for e in roster.entries()] == [("7B", "Robin"), ("8C", "Robin")]


def test_a_name_left_alone_is_free_again(clock):
    roster = Roster(live_s=60, clock=clock)
    roster.join("7B", "Robin", "tab-1", "10.0.0.5")
    clock.now += 30
    roster.join("7B", "Robin", "tab-1", "10.0.0.5")  # renewed
    clock.now += 59
    with pytest.raises(NameTaken):
        roster.join("7B", "Robin", "tab-2", "10.0.0.6")
    clock.now += 2  # the first tab stopped renewing 61 s ago: it was closed
    roster.join("7B", "Robin", "tab-2", "10.0.0.6")
    assert [e.name for e in roster.entries()] == ["Robin"]


def test_signing_in_again_in_the_same_browser_signs_the_old_tab_out(clock):
    roster = Roster(clock=clock)
    roster.join("7B", "Robin", "tab-1", "10.0.0.5", browser="robins-browser")
    roster.join("7B", "Robin", "tab-2", "10.0.0.5", browser="robins-browser")  # a reload: a new session
    with pytest.raises(SignedInElsewhere):
        roster.join("7B", "Robin", "tab-1", "10.0.0.5", browser="robins-browser")  # the old tab's next renewal
    roster.join("7B", "Robin", "tab-2", "10.0.0.5", browser="robins-browser")  # the new one keeps the name
    assert len(roster.entries()) == 1


def test_the_same_address_without_the_browser_cannot_take_a_name_over(clock):
    roster = Roster(clock=clock)
    roster.join("7B", "Robin", "tab-1", "10.0.0.5", browser="robins-browser")
    for browser in ("a-classmates-browser", ""):  # behind the school's one address
        with pytest.raises(NameTaken):
            roster.join("7B", "Robin", "tab-2", "10.0.0.5", browser=browser)
    roster.join("7B", "Robin", "tab-1", "10.0.0.5", browser="robins-browser")  # Robin keeps it


def test_names_are_compared_folded(clock):
    roster = Roster(clock=clock)
    roster.join("7B", "Alice Park", "tab-1", "10.0.0.5", browser="b1")
    small_capitals = "\u1d00\u029f\u026a\u1d04\u1d07 \u1d18\u1d00\u0280\u1d0b"
    for look_alike in ("\u0410lice Park", "\uff21lice Park", "ALICE  PARK", "Alice\u00a0Park ", small_capitals):
        with pytest.raises(NameTaken):
            roster.join("7B", look_alike, "tab-2", "10.0.0.6", browser="b2")
    roster.join("7B", "Alice Parks", "tab-2", "10.0.0.6", browser="b2")  # another name
    assert roster.remove("7B", "\u0410LICE PARK")
    with pytest.raises(NameRemoved):
        roster.check("7B", "alice park")


def test_removing_a_name_removes_its_browser_until_let_back(clock):
    roster = Roster(clock=clock)
    roster.join("7B", "Maya", "tab-1", "10.0.0.5", browser="mayas-browser")
    roster.join("7B", "Bo", "tab-2", "10.0.0.5", browser="mayas-browser")  # a second name, same browser
    roster.join("8C", "Maya", "tab-0", "10.0.0.5", browser="mayas-browser")  # in another class
    assert roster.remove("7B", "Maya")
    assert [(e.classroom, e.name) for e in roster.entries() if not e.removed] == [("8C", "Maya")]
    for name, session in (("Maya2", "tab-3"), ("Bo", "tab-2")):  # a new name, or the other one's renewal
        with pytest.raises(BrowserRemoved):
            roster.join("7B", name, session, "10.0.0.5", browser="mayas-browser")
    roster.join("7B", "Maya2", "tab-4", "10.0.0.5", browser="a-classmates-browser")
    roster.join("8C", "Maya", "tab-0", "10.0.0.5", browser="mayas-browser")  # another class's roster keeps her
    assert [(e.name, e.removed) for e in roster.entries() if e.classroom == "7B"] == [
        ("Maya2", False),
        ("Maya", True),
    ]
    assert roster.let_back("7B", "maya")
    roster.join("7B", "Maya", "tab-6", "10.0.0.5", browser="mayas-browser")


def test_a_name_must_pass_the_blocklist(clock):
    roster = Roster(clock=clock, blocklist=Blocklist(["nude"]))
    with pytest.raises(BlockedName):
        roster.join("7B", "N\u00fcde Nick", "tab-1", "10.0.0.5", browser="b1")
    roster.join("7B", "Nudelman", "tab-1", "10.0.0.5", browser="b1")  # whole words only


def test_one_computer_holds_a_few_names_at_most(clock):
    roster = Roster(max_per_address=2, clock=clock)
    roster.join("7B", "Ann", "a", "10.0.0.5")
    roster.join("7B", "Ben", "b", "10.0.0.5")
    with pytest.raises(TooManyNames, match="under 2 names"):
        roster.join("7B", "Cat", "c", "10.0.0.5")
    roster.join("7B", "Ann", "a", "10.0.0.5")  # renewing a name it holds is not a new place
    roster.join("7B", "Cat", "c", "10.0.0.7")  # another computer
    assert Roster(max_per_address=0, clock=clock).join("7B", "X", "x", "10.0.0.5") is None  # 0: no limit


def test_the_teacher_removes_a_name_and_can_let_it_back(clock):
    roster = Roster(clock=clock)
    roster.join("7B", "Ms Rivera", "tab-1", "10.0.0.5")
    assert roster.remove("7B", "ms rivera")
    with pytest.raises(NameRemoved):
        roster.join("7B", "Ms Rivera", "tab-1", "10.0.0.5")  # the session itself is signed out
    with pytest.raises(NameRemoved):
        roster.join("7B", "MS RIVERA", "tab-2", "10.0.0.9")  # and nobody may take the name
    with pytest.raises(NameRemoved):
        roster.check("7B", "Ms Rivera")  # nor generate with it
    roster.check("7B", "Robin")
    assert [(e.name, e.removed) for e in roster.entries()] == [("Ms Rivera", True)]
    assert roster.let_back("7B", "Ms Rivera")
    roster.join("7B", "Ms Rivera", "tab-3", "10.0.0.5")
    assert [(e.name, e.removed) for e in roster.entries()] == [("Ms Rivera", False)]
