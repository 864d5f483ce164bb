"""Lesson 9 on Shapes (AppTest, a real service): the training pictures, a word never learned, and did it copy.

What the page says is checked against the service and the training program: the pictures are the
first the program drew, the vector lengths are Tokenize's, and a red circle on the left finds a
red circle on the left among its nearest training pictures. On a server whose own model is another
(here the tiny one), lessons 9 and 10 ask Shapes running beside it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from streamlit.testing.v1 import AppTest

from services.inference.learned.training_set import training_specs
from services.lessons.catalog import DEFAULT_CATALOG
from tests.frontend.conftest import point_the_front_end_at
from tests.support.frontend import page_file
from tests.support.servers import client_for, running_server


@pytest.fixture(scope="module")
def shapes_server(settings):
    with running_server(settings.model_copy(update={"model": "shapes", "catalog": DEFAULT_CATALOG})) as server:
        yield server


@pytest.fixture
def shapes_env(shapes_server, monkeypatch) -> Iterator[str]:
    yield from point_the_front_end_at(shapes_server.address, monkeypatch)


def test_lesson_9_shows_its_training_pictures_a_word_it_never_learned_and_a_copy_check(shapes_env, shapes_server):
    at = AppTest.from_file(str(page_file("lessons/learned_from")), default_timeout=180).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    text = " ".join(m.value for m in at.markdown)
    assert (
        "learned from **40,000 pictures**" in text
        and "so it saw each one about 4.8 times: some more, a few never" in text
    )
    assert "in the order the program drew them" in text and "picked at random" in text
    # The later run, as the service says what it trained (not a sentence of the page's own).
    assert "Then it practised 500 more times on the first 20,000 pictures. Only the part that decides where" in text
    first = training_specs(0, 12)
    captions = [c for image in at.get("image") for c in image.captions if c.startswith("#")]
    assert captions[:12] and captions[0].startswith(f"#0: {first[0].caption}")

    # The held-out pairs, painted anyway, and what the judge sees in them.
    assert "The judge sees a purple triangle on the left." in text
    assert "The judge sees an orange star at the top." in text
    assert "No training picture shows a green square, an orange star or a purple triangle" in text

    # "dog": its vector's length is Tokenize's, shorter than every learned word of the prompt.
    client = client_for(shapes_server.address)
    try:
        dog = next(t for t in client.tokenize("a dog").tokens if t.text == "dog")
    finally:
        client.close()
    assert not dog.known and "no caption ever used it" in text
    assert f"its vector's length is **{dog.input_norm:.3f}**, shorter than any of them" in text
    # What "a dog" painted is only what the judge found in it: no claim the run does not show.
    assert "It can only paint what its training pictures showed" not in text
    assert "Asked for “a dog”, a word it never learned, it painted a picture anyway" in text

    at.number_input(key="training-page").set_value(2).run()  # pages are numbered from 1
    captions = [c for image in at.get("image") for c in image.captions if c.startswith("#")]
    assert captions[0].startswith(f"#12: {training_specs(0, 13)[12].caption}")

    # Did it copy? The default prompt, painted and compared.
    at.button[0].click().run()  # the form's submit button
    assert not at.exception and not at.error, [e.value for e in at.error]
    said = " ".join(m.value for m in at.markdown)
    assert "Searched: the first **5,000** of the 40,000 training pictures" in said
    assert "differs from yours by a typical (root-mean-square) **" in said and "on average" not in said
    assert "The nearest, “a red circle on the left”" in said
    questions = [m.value for m in at.markdown if "Carlini et al. 2023" in m.value]
    assert questions and "Who should decide the rules" in said


def test_beside_another_model_lessons_9_and_10_ask_shapes_there(frontend_env, shapes_server, monkeypatch):
    """The front end's own service runs the tiny model (as a GPU server runs Stable Diffusion); Shapes runs beside."""
    lesson_10 = AppTest.from_file(str(page_file("lessons/teach_word")), default_timeout=120).run()
    assert not lesson_10.exception, [e.value for e in lesson_10.exception]
    assert any("cannot be taught a new word on this server" in i.value for i in lesson_10.info)  # the tiny model

    monkeypatch.setenv("CLASSROOM_SHAPES_ADDR", shapes_server.address)
    lesson_9 = AppTest.from_file(str(page_file("lessons/learned_from")), default_timeout=180).run()
    assert not lesson_9.exception and not lesson_9.error, [e.value for e in [*lesson_9.exception, *lesson_9.error]]
    text = " ".join(m.value for m in lesson_9.markdown)
    assert "learned from **40,000 pictures**" in text and "The judge sees an orange star at the top." in text
    assert any("This lesson runs on Shapes" in c.value for c in lesson_9.caption)
    lesson_10 = AppTest.from_file(str(page_file("lessons/teach_word")), default_timeout=120).run()
    assert not lesson_10.exception, [e.value for e in lesson_10.exception]
    assert not lesson_10.info or not any("cannot be taught" in i.value for i in lesson_10.info)
    assert "Draw the new shape" in [h.value for h in lesson_10.subheader]  # Shapes' canvas, beside the tiny model
    assert any("This lesson runs on Shapes" in c.value for c in lesson_10.caption)
