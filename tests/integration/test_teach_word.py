"""Lesson 10 on a real Shapes server and a real Redis: a class hands in drawings, the teacher teaches a word.

The class's model is its own: a prompt with the word is another trajectory than the same
prompt in another class, prompts without it are shared, and the teacher can stop and forget.
"""

from __future__ import annotations

import io

import grpc
import numpy as np
import pytest
from PIL import Image

from services.common.api import pb
from services.common.client import ClassroomClient, ClientSettings, StudentError
from services.common.codecs import tensor_from_proto
from tests.integration.helpers import collect, request
from tests.support.drawings import heart_png, ink_of
from tests.support.servers import running_server

TEACHER = "owl-10"
STEPS = 12  # enough to see the whole flow; what the word looks like is the benchmark's business


@pytest.fixture(scope="module")
def shapes_server(settings):
    with running_server(settings.model_copy(update={"model": "shapes", "teacher_code": TEACHER})) as server:
        yield server


@pytest.fixture(scope="module")
def clients(shapes_server):
    made = {}

    def client(class_name: str) -> ClassroomClient:
        if class_name not in made:
            made[class_name] = ClassroomClient(ClientSettings(inference_addr=shapes_server.address), class_name)
        return made[class_name]

    yield client
    for front_end in made.values():
        front_end.close()


def refused(call, code: grpc.StatusCode) -> str:
    with pytest.raises(StudentError) as caught:
        call()
    assert caught.value.code == code, caught.value
    return str(caught.value)


def png(width: int, height: int, colour: str = "white") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, format="PNG")
    return out.getvalue()


def test_drawings_are_checked_and_bounded(clients):
    owls = clients("owls-check")
    state = owls.teaching("s1")
    assert state.teachable and state.phase == pb.TEACHING_PHASE_DRAWING and state.drawings == 0
    assert "almost empty" in refused(lambda: owls.submit_drawing(png(256, 256), "s1"), grpc.StatusCode.INVALID_ARGUMENT)
    assert "almost all ink" in refused(
        lambda: owls.submit_drawing(png(256, 256, "black"), "s1"), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert "at most 256" in refused(lambda: owls.submit_drawing(png(300, 300), "s1"), grpc.StatusCode.INVALID_ARGUMENT)
    assert "could not be read" in refused(
        lambda: owls.submit_drawing(b"GIF89a not a png", "s1"), grpc.StatusCode.INVALID_ARGUMENT
    )
    for seed in range(3):
        answer = owls.submit_drawing(heart_png(seed), "s1", name="Sam")
        assert (answer.yours, answer.class_drawings) == (seed + 1, seed + 1)
        if seed == 0:  # the same drawing again (a reload, a second tab): kept once, under its first id
            again = owls.submit_drawing(heart_png(0), "s1", name="Sam")
            assert (again.drawing_id, again.yours, again.class_drawings) == (answer.drawing_id, 1, 1)
    assert "3 drawings" in refused(lambda: owls.submit_drawing(heart_png(9), "s1"), grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert owls.teaching("s1").yours == 3 and owls.teaching("s2").yours == 0
    # Two students may draw alike: the same drawing from another student is theirs.
    assert owls.submit_drawing(heart_png(0), "s2", name="Kim").yours == 1

    # What is kept is the drawing redrawn in black and white, with its ink where the student drew it.
    kept = owls.drawings(TEACHER)
    assert [d.student_name for d in kept] == ["Sam"] * 3 + ["Kim"]
    assert (ink_of(kept[0].png) == ink_of(heart_png(0))).mean() > 0.99
    assert owls.remove_drawing(TEACHER, kept[0].drawing_id)
    assert not owls.remove_drawing(TEACHER, kept[0].drawing_id)
    assert len(owls.drawings(TEACHER)) == 3
    # Another class sees none of them; a wrong teacher code sees nothing at all.
    assert clients("foxes-check").drawings(TEACHER) == []
    refused(lambda: owls.drawings("not-the-code"), grpc.StatusCode.PERMISSION_DENIED)


def test_a_class_teaches_its_model_a_word_that_is_its_alone(clients):
    owls, foxes = clients("owls"), clients("foxes")
    for student in range(5):
        owls.submit_drawing(heart_png(100 + student), f"owl-{student}", name=f"Owl {student}")
    assert "already knows" in refused(
        lambda: list(owls.teach_word(TEACHER, "circle", STEPS)), grpc.StatusCode.INVALID_ARGUMENT
    )
    too_few = refused(lambda: list(foxes.teach_word(TEACHER, "heart", STEPS)), grpc.StatusCode.INVALID_ARGUMENT)
    assert "at least" in too_few

    red_heart = request("a red heart on the left", seed=5, num_inference_steps=10)
    before = collect(owls.generate(red_heart, "owl-0"))

    states = list(owls.teach_word(TEACHER, "heart", STEPS))
    assert states[0].phase == pb.TEACHING_PHASE_TRAINING and states[0].word == "heart"
    final = states[-1]
    assert final.phase == pb.TEACHING_PHASE_TAUGHT, final.message
    assert final.taught_word == "heart" and final.step == final.total_steps == STEPS
    assert len(final.losses) == STEPS and all(loss > 0 for loss in final.losses)
    assert len(final.new_word_losses) == len(final.known_losses) == STEPS  # each step's two halves, kept apart
    sheet = Image.open(io.BytesIO(final.samples_png))
    assert sheet.height == 64 and len(final.samples_prompts) >= 1 and "heart" in final.samples_prompts[0]
    assert f"from 5 drawings in {STEPS} steps" in final.message
    # Every student's page reads the same state; the other class has no word.
    assert owls.teaching("owl-3").taught_word == "heart"
    assert foxes.teaching("fox-1").taught_word == "" and foxes.teaching("fox-1").phase == pb.TEACHING_PHASE_DRAWING

    # The class's model knows the word: its tokens say so, and its row in the input table has moved.
    heart_of = {c: next(t for t in c.tokenize("a red heart", "s").tokens if t.text == "heart") for c in (owls, foxes)}
    assert heart_of[owls].known and not heart_of[foxes].known
    assert heart_of[owls].input_norm != heart_of[foxes].input_norm

    # A prompt with the word is painted by the class's own model: another trajectory than before
    # teaching, and than the same prompt in the other class; a prompt without it is shared.
    after = collect(owls.generate(red_heart, "owl-1"))
    elsewhere = collect(foxes.generate(red_heart, "fox-1"))
    assert after.status.trajectory_key != before.status.trajectory_key
    assert elsewhere.status.trajectory_key == before.status.trajectory_key
    assert (after.image != elsewhere.image).any()
    # Every lens works on the class's model: its attention maps, one per token, at every step.
    mapped = collect(owls.generate(request("a red heart on the left", seed=6, num_inference_steps=4,
                                           include=["cross_attention"]), "owl-1"))  # fmt: skip
    pieces = [t.text for t in mapped.header.prompt.tokens.tokens if t.kind != pb.TOKEN_KIND_PADDING]
    assert "heart" in pieces and len(mapped.frames) == 4
    maps = tensor_from_proto(mapped.frames[-1].cross_attention.maps)
    assert maps.shape[0] == len(pieces) and np.isfinite(maps).all() and maps[pieces.index("heart")].sum() > 0

    # Lesson 8 with the word: a run never switched and one switched at step 3 name the same two prompts, so one
    # model paints both (the class's), and they share their first 3 steps exactly.
    def switched_at(k: int) -> pb.GenerateRequest:
        message = request("a red circle on the left", seed=7, num_inference_steps=6, include=["latent"])
        message.branch.at_step, message.branch.prompt = k, "a red heart on the left"
        return message

    original, branched = (collect(owls.generate(switched_at(k), "owl-1")) for k in (6, 3))
    same = [np.array_equal(a, b) for a, b in zip(original.latents(), branched.latents(), strict=True)]
    assert same == [True] * 3 + [False] * 3, same

    circle = request("a blue circle", seed=5, num_inference_steps=10)
    assert (
        collect(owls.generate(circle, "owl-1")).status.trajectory_key
        == collect(foxes.generate(circle, "fox-1")).status.trajectory_key
    )

    # While the class's model trains, no drawings come in; stopping keeps the word it had.
    training = owls.teach_word(TEACHER, "heart", 400)
    assert next(training).phase == pb.TEACHING_PHASE_TRAINING
    busy = refused(lambda: owls.submit_drawing(heart_png(7), "owl-4"), grpc.StatusCode.FAILED_PRECONDITION)
    assert "right now" in busy
    assert owls.stop_teaching(TEACHER)
    stopped = list(training)[-1]
    assert stopped.phase == pb.TEACHING_PHASE_STOPPED and 'still knows "heart"' in stopped.message
    assert stopped.taught_word == "heart"

    # Forgotten: the class's prompts are the model's own again.
    assert owls.reset_word(TEACHER)
    assert owls.teaching("owl-1").taught_word == ""
    again = collect(owls.generate(red_heart, "owl-2"))
    assert again.status.trajectory_key == before.status.trajectory_key


def test_a_server_s_one_unnamed_class_paints_the_word_it_taught(clients):
    """`make up` names no class: its students are the server's one class, "", and its word is theirs too."""
    unnamed = clients("")
    for student in range(4):
        unnamed.submit_drawing(heart_png(300 + student), f"u-{student}", name=f"U{student}")
    red_heart = request("a red heart on the left", seed=5, num_inference_steps=10)
    before = collect(unnamed.generate(red_heart, "u-0"))
    assert list(unnamed.teach_word(TEACHER, "heart", STEPS))[-1].phase == pb.TEACHING_PHASE_TAUGHT
    assert next(t for t in unnamed.tokenize("a red heart", "u-1").tokens if t.text == "heart").known
    after = collect(unnamed.generate(red_heart, "u-1"))
    assert after.status.trajectory_key != before.status.trajectory_key  # painted by the class's own model
    assert unnamed.reset_word(TEACHER, drawings_too=True)
