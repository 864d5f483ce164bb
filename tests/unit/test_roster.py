"""Who is in class: one live session per name, a few names per computer, names the teacher removed."""

from __future__ import annotations

import pytest

from services.inference.refusals import NameRemoved, NameTaken, SignedInElsewhere, TooManyNames
from services.inference.roster import Roster


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


def test_signing_in_again_on_the_same_computer_signs_the_old_tab_out(clock):
    roster = Roster(clock=clock)
    roster.join("7B", "Robin", "tab-1", "10.0.0.5")
    roster.join("7B", "Robin", "tab-2", "10.0.0.5")  # a reload: a new session, the same machine
    with pytest.raises(SignedInElsewhere):
        roster.join("7B", "Robin", "tab-1", "10.0.0.5")  # the old tab's next renewal
    roster.join("7B", "Robin", "tab-2", "10.0.0.5")  # the new one keeps the name
    assert len(roster.entries()) == 1


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
