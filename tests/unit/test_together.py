"""Teaching together's rules without a server: quick checks, the class map's projection, lesson questions."""

from __future__ import annotations

import numpy as np
import pytest

from services.common.api import pb
from services.inference.refusals import AlreadyAnswered, NoQuickCheck, RequestError
from services.inference.together.classmap import pooled_path, project
from services.inference.together.quickcheck import QuickCheck, teachers_own
from services.inference.together.together import lesson_questions
from services.lessons.catalog import Catalog, all_entries


def test_a_teachers_question_is_checked():
    check = teachers_own("  Which   is right? ", ["this", "that"], 1)
    assert (check.question, [c.text for c in check.choices], check.answer) == ("Which is right?", ["this", "that"], 1)
    for question, choices, answer in [
        ("", ["a", "b"], 0),
        ("x" * 201, ["a", "b"], 0),
        ("Pick \u202eone", ["a", "b"], 0),
        ("Pick one", ["only"], 0),
        ("Pick one", ["a"] * 7, 0),
        ("Pick one", ["a", ""], 0),
        ("Pick one", ["a", "b" * 81], 0),
        ("Pick one", ["a", "b"], 2),
    ]:
        with pytest.raises(RequestError):
            teachers_own(question, choices, answer)


def test_one_answer_each_and_nothing_shown_before_the_reveal():
    check = QuickCheck("Which?", [pb.QuickCheckChoice(text=t) for t in "abc"], answer=2)
    assert check.answer_from("ada", check.id, 2) == 2
    check.answer_from("ben", check.id, 0)
    with pytest.raises(AlreadyAnswered):
        check.answer_from("ada", check.id, 1)
    with pytest.raises(RequestError):
        check.answer_from("cai", check.id, 3)
    with pytest.raises(NoQuickCheck):
        check.answer_from("cai", "another question", 0)
    shown = check.message(for_teacher=False)
    assert shown.answered == 2 and not shown.HasField("answer") and not shown.tally
    teacher = check.message(for_teacher=True)
    assert (teacher.answer, list(teacher.tally)) == (2, [1, 0, 1])
    check.revealed = True
    shown = check.message(for_teacher=False)
    assert (shown.answer, list(shown.tally)) == (2, [1, 0, 1])
    with pytest.raises(NoQuickCheck):  # revealed: closed
        check.answer_from("cai", check.id, 2)


def test_the_map_fits_one_projection_on_every_point():
    rng = np.random.default_rng(0)
    # Two clusters of ends, far apart along one direction; paths start from noise.
    paths = []
    for end in (np.full(16, 5.0), np.full(16, -5.0)):
        for _ in range(2):
            start = rng.normal(size=16)
            paths.append(np.linspace(start, end + rng.normal(scale=0.1, size=16), 11))
    projection = project(paths)
    assert [p.shape for p in projection.paths] == [(11, 2)] * 4
    assert 0.9 < projection.explained_variance <= 1
    ends = [p[-1] for p in projection.paths]
    assert np.linalg.norm(ends[0] - ends[1]) < np.linalg.norm(ends[0] - ends[2])
    assert project([]).paths == []


def test_a_path_is_pooled_and_thinned():
    latents = [np.full((4, 64, 64), float(i)) for i in range(151)]
    rows = pooled_path(latents)
    assert rows.shape == (51, 4 * 2 * 2)
    assert rows[0].max() == 0 and rows[-1].min() == 150  # the noise and the picture are always kept


def test_lesson_questions_find_their_pictures_and_drop_ambiguous_ones():
    catalog = Catalog.model_validate({
        "version": 1,
        "collections": [{
            "id": "pairs", "lesson": "change-one-word", "title": "Pairs",
            "pairs": {"fox": ["a fox", "a cat"]}, "seeds": [1, 2], "guidance_scales": [0, 7],
            "questions": [
                {"id": "g0", "question": "Which is g = 0?", "answer": 1, "choices": [
                    {"labels": {"side": "a", "seed": "1", "guidance_scale": "7"}},
                    {"labels": {"side": "a", "seed": "1", "guidance_scale": "0"}}]},
                {"id": "vague", "question": "Which?", "answer": 0, "choices": [
                    {"labels": {"side": "a"}}, {"text": "none"}]},
            ],
        }],
    })  # fmt: skip
    entries = [(entry, entry.request) for entry in all_entries(catalog)]
    found = lesson_questions(catalog, entries)
    assert list(found) == ["pairs/g0"]  # "side a" names four pictures: that question is left out
    question = found["pairs/g0"]
    assert [c.request.guidance_scale for c in question.choices] == [7, 0] and question.answer == 1
    assert all(c.entry_id.startswith("pairs/fox-a/seed1") for c in question.choices)
