"""A closed tab's generations stop; an open one's, or one back within the grace, go on."""

from __future__ import annotations

from frontend.stream.tabs import GRACE_S, KEPT_PER_TAB, TabWatch


class Generation:
    def __init__(self) -> None:
        self.stopped = False

    def stop(self) -> None:
        self.stopped = True


def test_the_generations_of_a_closed_tab_stop_after_the_grace():
    open_tabs = {"tab-a", "tab-b"}
    watch = TabWatch(is_open=lambda session: session in open_tabs)
    mine, theirs = Generation(), Generation()
    watch.hold("tab-a", mine)
    watch.hold("tab-b", theirs)
    assert watch.sweep(now=100.0) == 0
    open_tabs.discard("tab-a")  # the student closed the tab
    assert watch.sweep(now=100.0) == 0 and not mine.stopped  # not yet: it may be a network blip
    assert watch.sweep(now=100.0 + GRACE_S) == 1
    assert mine.stopped and not theirs.stopped
    assert watch.sweep(now=200.0) == 0  # stopped once, then forgotten


def test_a_tab_back_within_the_grace_keeps_its_generation():
    open_tabs = {"tab-a"}
    watch = TabWatch(is_open=lambda session: session in open_tabs)
    mine = Generation()
    watch.hold("tab-a", mine)
    open_tabs.clear()
    watch.sweep(now=10.0)
    open_tabs.add("tab-a")  # reconnected
    watch.sweep(now=10.0 + GRACE_S / 2)
    open_tabs.clear()
    assert watch.sweep(now=10.0 + GRACE_S) == 0  # the grace starts again from the new absence
    assert not mine.stopped


def test_a_tab_holds_only_its_latest_generations():
    watch = TabWatch(is_open=lambda session: False)
    made = [Generation() for _ in range(KEPT_PER_TAB + 3)]
    for generation in made:
        watch.hold("tab-a", generation)
    watch.sweep(now=0.0)
    assert watch.sweep(now=GRACE_S) == KEPT_PER_TAB
    assert [g.stopped for g in made] == [False] * 3 + [True] * KEPT_PER_TAB
