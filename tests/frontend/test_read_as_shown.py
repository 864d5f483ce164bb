"""What a class reads on screen, found by walking the product in Chromium: whole answers.

A quick check's text answers sat in columns whose buttons cut a long label to one
line ("A: [click](http://example.c…"), so a student answered without reading the
answer.
"""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

LONG = "It follows the prompt less, so the circle may not be red any more"


def _ask() -> None:
    from frontend.together import quick_check
    from services.common.api import pb

    long = "It follows the prompt less, so the circle may not be red any more"  # AppTest runs this source alone
    choices = [pb.QuickCheckChoice(text=long), pb.QuickCheckChoice(text="Nothing")]
    quick_check(pb.QuickCheck(id="q1", question="What does guidance 0 do?", choices=choices))


def test_a_quick_checks_text_answers_wrap_onto_more_lines_instead_of_being_cut() -> None:
    at = AppTest.from_function(_ask, default_timeout=30).run()
    assert not at.exception
    buttons = {button.proto.label: button.proto for button in at.button}
    assert f"A: {LONG}" in buttons  # the whole answer is the label
    assert all(button.wrap for button in buttons.values())  # and it wraps rather than ending in "…"
