"""Lesson 10's page and the teacher's side of it (AppTest, a fake client): what each state reads as.

The service is faked at the client (frontend.client.ClassroomClient): the page's sentences are
checked against the TeachingState it is given, the loss sentence against the losses, and every
name or word a person typed appears as typed. The real service is in tests/frontend/test_teach_browser.py.
"""

from __future__ import annotations

import base64
import io
import json
import threading
from collections.abc import Iterator
from typing import ClassVar

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from frontend.client import StudentError
from frontend.together.teach_side import halves_summary, loss_summary
from services.common.api import pb
from tests.support.frontend import page_file

CODE = "heron-7"
LOSSES = [0.41, 0.39, 0.37, 0.33, 0.30, 0.26, 0.22, 0.2, 0.17, 0.15] * 2 + [0.12] * 20  # 40 steps


def png(size: int = 32) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (255, 255, 255)).save(buffer, format="PNG")
    return buffer.getvalue()


class FakeClient:
    """The calls lesson 10 makes, answered from `state` and recorded."""

    state = pb.TeachingState(phase=pb.TEACHING_PHASE_DRAWING, drawings=3, yours=1, teachable=True)
    drawings_in: ClassVar[list[pb.ClassDrawing]] = []
    submitted: ClassVar[list[tuple[bytes, str, str]]] = []
    taught: ClassVar[list[tuple[str, str, int]]] = []
    acted: ClassVar[list[tuple[str, object]]] = []
    asked: ClassVar[list[str]] = []  # the address of each service asked for the class's teaching
    refusal = ""
    taught_event = threading.Event()

    def __init__(self, settings: object, class_name: str = "") -> None:
        self.settings = settings
        self.class_name = class_name

    def teaching(self, student: str = "", name: str = "") -> pb.TeachingState:
        FakeClient.asked.append(self.settings.inference_addr)
        return self.state

    def model_info(self) -> pb.GetModelInfoResponse:
        info = pb.GetModelInfoResponse(
            model_display_name="Shapes", default_steps=20, default_width=64, default_height=64,
            default_guidance_scale=7.5, default_scheduler="ddim",
        )  # fmt: skip
        info.limits.max_prompt_chars = 300
        info.limits.max_seed = 2**31 - 1
        return info

    def submit_drawing(self, png: bytes, student: str, name: str = "") -> pb.SubmitDrawingResponse:
        if FakeClient.refusal:
            raise StudentError(FakeClient.refusal)
        FakeClient.submitted.append((png, student, name))
        return pb.SubmitDrawingResponse(drawing_id="d1", yours=len(FakeClient.submitted), class_drawings=4)

    def drawings(self, teacher_code: str) -> list[pb.ClassDrawing]:
        assert teacher_code == CODE
        return FakeClient.drawings_in

    def remove_drawing(self, teacher_code: str, drawing_id: str) -> bool:
        FakeClient.acted.append(("remove", drawing_id))
        return True

    def stop_teaching(self, teacher_code: str) -> bool:
        FakeClient.acted.append(("stop", teacher_code))
        return True

    def reset_word(self, teacher_code: str, drawings_too: bool = False) -> bool:
        FakeClient.acted.append(("reset", drawings_too))
        return True

    def teach_word(self, teacher_code: str, word: str, steps: int = 0) -> Iterator[pb.TeachingState]:
        FakeClient.taught.append((teacher_code, word, steps))
        FakeClient.taught_event.set()
        yield pb.TeachingState(phase=pb.TEACHING_PHASE_TRAINING, word=word, total_steps=steps, teachable=True)


@pytest.fixture
def fake(monkeypatch) -> Iterator[type[FakeClient]]:
    from frontend.client import _client_at, get_client

    monkeypatch.setattr("frontend.client.ClassroomClient", FakeClient)
    monkeypatch.delenv("CLASSROOM_SHAPES_ADDR", raising=False)
    FakeClient.state = pb.TeachingState(phase=pb.TEACHING_PHASE_DRAWING, drawings=3, yours=1, teachable=True)
    FakeClient.drawings_in, FakeClient.submitted, FakeClient.taught, FakeClient.acted = [], [], [], []
    FakeClient.asked = []
    FakeClient.taught_event.clear()
    FakeClient.refusal = ""
    get_client.clear(), _client_at.clear()
    yield FakeClient
    get_client.clear(), _client_at.clear()


def lesson(teacher: bool = False) -> AppTest:
    at = AppTest.from_file(str(page_file("teach_word")), default_timeout=30)
    at.session_state["display_name"] = "Sam"
    if teacher:
        at.session_state["teacher_code"] = CODE
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def words(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [i.value for i in at.info]
    parts += [s.value for s in at.subheader] + [t.value for t in at.text] + [e.value for e in at.error]
    return "\n".join(parts)


def canvases(at: AppTest) -> int:
    return sum(node.key == "teach-canvas" for node in at.get("component_instance"))


def canvas_args(at: AppTest) -> dict:
    (canvas,) = [node for node in at.get("component_instance") if node.key == "teach-canvas"]
    return json.loads(canvas.proto.json_args)


def test_the_loss_sentence_says_what_the_numbers_show():
    # 40 steps: the first and last 4 averaged (a tenth of the steps).
    start, end = sum(LOSSES[:4]) / 4, sum(LOSSES[-4:]) / 4
    assert loss_summary(LOSSES) == (
        f"The loss fell from {start:.3g} to {end:.3g} over 40 steps (averages of the first 4 and the last 4 steps)."
    )
    assert loss_summary([0.2, 0.5]) == "The loss rose from 0.2 to 0.5 over 2 steps."
    assert loss_summary([0.3001, 0.2999]) == "The loss stayed at about 0.3 over 2 steps."
    assert loss_summary([0.25]) == "The loss was 0.25 after the first step."
    assert loss_summary([]) == "No training steps yet, so there is no loss to show."


def test_drawing_the_page_explains_the_lesson_and_offers_the_canvas(fake):
    at = lesson()
    said = words(at)
    assert at.title[0].value == "10. Teach it a new word"
    assert "knows just four shapes: circle, square, triangle and star" in said
    assert "Now: handing in drawings." in said
    assert "Nothing taught yet. The class has handed in 3 drawings, 1 of them yours." in said
    assert canvases(at) == 1
    assert not at.text_input  # nothing to prompt before a word is taught


def test_a_hand_in_is_sent_once_and_counted(fake):
    at = lesson()
    url = "data:image/png;base64," + base64.b64encode(png()).decode()
    at.session_state["teach-canvas"] = {"png": url, "nonce": "first"}
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert [(p, n) for p, _, n in fake.submitted] == [(png(), "Sam")]
    assert "Handed in. You have 1 drawing in; the class has 4." in [s.value for s in at.success]
    assert canvas_args(at)["accepted"] == "first"  # the canvas hears it was taken, and clears itself
    at.run()  # the page runs again: the component still holds the same drawing, and it is not sent again
    assert len(fake.submitted) == 1 and not at.success
    at.session_state["teach-canvas"] = {"png": url, "nonce": "second"}
    at.run()
    assert len(fake.submitted) == 2
    assert "Handed in. You have 2 drawings in; the class has 4." in [s.value for s in at.success]
    at.session_state["teach-canvas"] = {"png": "data:text/html;base64,PGI+", "nonce": "third"}
    at.run()
    assert len(fake.submitted) == 2 and "did not arrive as a picture" in words(at)


def test_a_refused_hand_in_says_why_and_keeps_the_drawing(fake):
    fake.refusal = "You have handed in 3 drawings already: that is the most."
    at = lesson()
    url = "data:image/png;base64," + base64.b64encode(png()).decode()
    at.session_state["teach-canvas"] = {"png": url, "nonce": "fourth"}
    at.run()
    assert [e.value for e in at.error] == ["You have handed in 3 drawings already: that is the most."]
    assert canvas_args(at)["refused"] == "fourth" and canvas_args(at)["accepted"] == ""
    assert not fake.submitted


def test_the_halves_sentence_says_whether_the_old_shapes_got_worse():
    falling, level, rising = [0.02] * 10 + [0.01] * 10, [0.008] * 20, [0.008] * 10 + [0.0095] * 10
    kept = halves_summary(falling, level)
    assert kept.startswith("On the class's drawings, the loss fell from 0.02 to 0.01 over 20 steps")
    assert "On the four shapes it already knew, the loss stayed at about 0.008 over 20 steps" in kept
    assert kept.endswith("It has not got worse at the shapes it knew: practising them alongside keeps them.")
    forgetting = halves_summary(falling, rising)
    assert "the loss rose from 0.008 to 0.0095" in forgetting and "it is starting to forget them" in forgetting
    # A rise within a tenth of where it started is noise, not forgetting; the sentence still says it rose.
    slight = halves_summary(falling, [0.008] * 10 + [0.0085] * 10)
    assert "rose from 0.008 to 0.0085" in slight and "That rise is less than a tenth" in slight
    assert "it has not got worse at the shapes it knew" in slight


def test_training_shows_the_step_the_loss_and_the_pictures_and_closes_hand_ins(fake):
    fake.state = pb.TeachingState(
        phase=pb.TEACHING_PHASE_TRAINING, word="heart", drawings=12, yours=2, step=40, total_steps=120,
        losses=LOSSES, samples_png=png(64), samples_step=30, seconds=41.6, teachable=True,
        samples_prompts=["a red heart on the left", "a blue heart"],
    )  # fmt: skip
    at = lesson()
    said = words(at)
    assert "Now: training." in said
    assert "The model is learning “heart”: step **40 of 120**, 42 s so far. The class's set has 12 drawings." in said
    assert loss_summary(LOSSES) in said and "The loss fell from 0.375 to 0.12 over 40 steps" in said
    assert len(at.get("vega_lite_chart")) + len(at.get("arrow_vega_lite_chart")) == 1, "the loss curve"
    assert "A model that guessed no noise at all would score about 1" in said  # the loss's scale
    captions = [caption for image in at.get("image") for caption in image.captions]
    assert any(
        "The model's pictures at step 30, asked for (left to right): a red heart on the left; a blue heart" in c
        for c in captions
    ), captions
    assert canvases(at) == 0 and "handing in is closed" in said


def test_the_two_halves_are_charted_apart_and_said(fake):
    known = [0.3] * 40
    fake.state = pb.TeachingState(
        phase=pb.TEACHING_PHASE_TRAINING, word="heart", drawings=12, step=40, total_steps=120, teachable=True,
        losses=LOSSES, new_word_losses=LOSSES, known_losses=known,
    )  # fmt: skip
    said = words(lesson())
    assert halves_summary(LOSSES, known) in said and "It has not got worse at the shapes it knew" in said
    assert loss_summary(LOSSES) not in said  # one sentence per chart: the halves'


def test_the_teacher_on_the_lesson_page_reads_the_teacher_s_sentence(fake):
    fake.state = pb.TeachingState(phase=pb.TEACHING_PHASE_DRAWING, drawings=3, yours=0, teachable=True)
    said = words(lesson(teacher=True))
    assert "Name the word and press Teach" in said and "When your teacher names the word" not in said
    assert "When your teacher names the word" in words(lesson())


def test_taught_offers_the_word_in_a_prompt_and_says_what_was_learned(fake):
    fake.state = pb.TeachingState(
        phase=pb.TEACHING_PHASE_TAUGHT, word="heart", taught_word="heart", drawings=12, step=120, total_steps=120,
        losses=LOSSES, seconds=95, teachable=True, message="Shapes learned “heart” from 12 drawings.",
    )  # fmt: skip
    at = lesson()
    said = words(at)
    assert "Now: taught." in said
    assert "Your class's model was trained on “heart” for 120 steps (95 s)." in said
    assert "fewer than the 250 steps the recipe was measured with" in said  # so it may not look like them yet
    assert "Shapes learned “heart” from 12 drawings." not in said  # the page's own sentence says it
    assert at.text_input(key="teach-prompt").value == "a blue heart on the right"
    assert "lesson **7. Which word paints where**" in said and "**Playground**" in said
    assert canvases(at) == 1  # more drawings may come for a next training


@pytest.mark.parametrize(
    ("phase", "sentence"),
    [
        (pb.TEACHING_PHASE_FAILED, "The training of “heart” failed at step 12 of 120."),
        (pb.TEACHING_PHASE_STOPPED, "Your teacher stopped the training of “heart” at step 12 of 120."),
    ],
)
def test_failed_and_stopped_say_so_with_the_service_reason(fake, phase, sentence):
    fake.state = pb.TeachingState(phase=phase, word="heart", step=12, total_steps=120, losses=LOSSES[:12],
                                  message="The server ran out of memory.", teachable=True)  # fmt: skip
    at = lesson()
    said = words(at)
    assert sentence in said and "The class's model is plain Shapes: it knows no new word." in said
    # The service's own sentence when it adds to the page's: why it failed (a stop says it all already).
    assert ("The server ran out of memory." in said) == (phase == pb.TEACHING_PHASE_FAILED)
    assert not at.text_input


def test_stopped_with_a_word_kept_still_offers_it_and_labels_the_stopped_run_s_pictures(fake):
    fake.state = pb.TeachingState(phase=pb.TEACHING_PHASE_STOPPED, word="heart", taught_word="heart", step=12,
                                  total_steps=120, losses=LOSSES[:12], samples_png=png(), samples_step=10,
                                  samples_prompts=["a red heart"], teachable=True)  # fmt: skip
    at = lesson()
    said = words(at)
    assert "The class's model knows “heart”." in said
    assert at.text_input(key="teach-prompt").value == "a blue heart on the right"
    captions = [caption for image in at.get("image") for caption in image.captions]
    assert any("The stopped training's pictures (not used) at step 10" in c for c in captions), captions


def test_a_model_that_cannot_be_taught_says_so_and_offers_no_canvas(fake):
    fake.state = pb.TeachingState(
        teachable=False, message="Stable Diffusion is too large to fine-tune while a class waits."
    )
    at = lesson()
    said = words(at)
    assert "Shapes cannot be taught a new word on this server." in said
    assert "Stable Diffusion is too large to fine-tune while a class waits." in said
    assert canvases(at) == 0 and "The training, live" not in said


def test_names_and_words_people_typed_are_shown_as_typed(fake):
    fake.drawings_in = [
        pb.ClassDrawing(drawing_id="a", student_name="<b>x</b>", png=png()),
        pb.ClassDrawing(drawing_id="b", student_name="**x**", png=png()),
    ]
    fake.state = pb.TeachingState(phase=pb.TEACHING_PHASE_TAUGHT, word="**y**", taught_word="**y**", step=40,
                                  total_steps=40, teachable=True)  # fmt: skip
    at = lesson(teacher=True)
    assert [t.value for t in at.text] == ["<b>x</b>", "**x**"]  # st.text: as typed
    said = words(at)
    assert "“\\*\\*y\\*\\*”" in said  # escaped wherever markdown reads it: shown as typed
    assert "“**y**”" not in said
    assert at.text_input(key="teach-prompt").value == "a blue **y** on the right"
    # Each Remove names whose drawing it takes out, as typed (markdown escaped).
    assert [b.label for b in at.button if b.label.startswith("Remove ")] == [
        "Remove \\<b\\>x\\</b\\>'s drawing",
        "Remove \\*\\*x\\*\\*'s drawing",
    ]


def test_teach_starts_the_training_without_holding_the_page(fake):
    at = lesson(teacher=True)
    at.text_input(key="teach-word").input("heart")
    at.number_input(key="teach-steps").set_value(40)
    next(b for b in at.button if b.label == "Teach").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert fake.taught_event.wait(10)
    assert fake.taught == [(CODE, "heart", 40)]
    assert "Teaching “heart”: the progress shows below, and on every student's page." in [s.value for s in at.success]


def _teacher_side() -> None:
    """The teacher's side as the teacher's page draws it (its other parts need a real service)."""
    from frontend.together.teach_side import teach_a_word

    teach_a_word()


def test_the_teacher_removes_a_drawing_stops_and_forgets(fake):
    fake.drawings_in = [pb.ClassDrawing(drawing_id="d7", student_name="<b>x</b>", png=png()),
                        pb.ClassDrawing(drawing_id="d8", student_name="", png=png())]  # fmt: skip
    fake.state = pb.TeachingState(phase=pb.TEACHING_PHASE_TRAINING, word="heart", step=3, total_steps=40,
                                  teachable=True)  # fmt: skip
    at = AppTest.from_function(_teacher_side, default_timeout=30)
    at.session_state["teacher_code"] = CODE
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.button(key="teach-remove-d8").label == "Remove this drawing"  # a drawing with no name
    at.button(key="teach-remove-d7").click().run()
    assert ("remove", "d7") in fake.acted
    assert "Removed a drawing by \\<b\\>x\\</b\\>." in [s.value for s in at.success]
    at.button(key="teach-stop").click().run()
    assert ("stop", CODE) in fake.acted and "Stopped the training." in [s.value for s in at.success]
    fake.state = pb.TeachingState(phase=pb.TEACHING_PHASE_STOPPED, word="heart", step=3, total_steps=40,
                                  teachable=True)  # fmt: skip
    at.run()
    said = "\n".join(m.value for m in at.markdown)
    assert "You stopped the training of “heart” at step 3" in said and "Your teacher" not in said
    at.checkbox(key="teach-forget-drawings").check()
    at.button(key="teach-forget").click().run()
    assert ("reset", True) in fake.acted
    assert "The class's model is plain Shapes again and its drawings are gone." in [s.value for s in at.success]


def test_beside_another_model_the_lesson_asks_shapes_there_and_says_so(fake, monkeypatch):
    """A GPU server: Stable Diffusion is the main model, Shapes runs beside it (CLASSROOM_SHAPES_ADDR)."""
    monkeypatch.setenv("CLASSROOM_SHAPES_ADDR", "shapes:50051")
    fake.state = pb.TeachingState(phase=pb.TEACHING_PHASE_TAUGHT, word="heart", taught_word="heart", step=250,
                                  total_steps=250, teachable=True)  # fmt: skip
    at = lesson()
    said = words(at)
    assert set(fake.asked) == {"shapes:50051"}, fake.asked  # never the main service: its model is not Shapes
    assert "This lesson runs on Shapes" in said
    assert "Only Shapes knows “heart”" in said and "Every page now paints" not in said
    # Without one beside, the server's own model is Shapes: the other pages paint the word too.
    monkeypatch.delenv("CLASSROOM_SHAPES_ADDR")
    fake.asked.clear()
    said = words(lesson())
    assert "This lesson runs on Shapes" not in said and "Every page now paints" in said
    assert fake.asked and "shapes:50051" not in fake.asked
