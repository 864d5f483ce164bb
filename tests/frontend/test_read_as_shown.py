"""What a class reads on screen, found by walking the product in Chromium: whole answers.

A quick check's text answers sat in columns whose buttons cut a long label to one
line ("A: [click](http://example.c…"), so a student answered without reading the
answer.
"""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

LONG = "It follows the prompt less, so the circle may not be red any more"


def _ask() -> None:
    from frontend.together.student_side import quick_check
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


def test_a_name_pasted_too_long_is_refused_with_a_sentence_not_emptied(monkeypatch) -> None:
    """With max_chars the browser dropped a 41-character paste whole: an empty box, then "Please type the name"."""
    monkeypatch.setenv("CLASSROOM_CLASS_CODE", "owl-42")
    at = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "frontend" / "app.py"), default_timeout=60).run()
    name_box = next(box for box in at.text_input if box.label == "Your name")
    assert not name_box.max_chars  # 0: no limit in the browser
    next(box for box in at.text_input if box.label == "Class code").input("owl-42")
    name_box.input("x" * 41)
    at.button[0].click().run()
    assert [e.value for e in at.error] == ["A name may be at most 40 characters long."]
