"""The Playground beside Shapes (AppTest, real services): the class's word is painted by the class's Shapes model.

As on a GPU server: the front end's own service runs another model (here the tiny one, as a
GPU server runs Stable Diffusion), and Shapes runs beside it (CLASSROOM_SHAPES_ADDR), both with
one Redis. The class teaches Shapes "heart" (lesson 10); in the Playground, "a blue heart on the
right" is painted by the class's Shapes model (its trajectory is the one the Shapes service gives
this class, not another class's) and the page says so; an ordinary prompt is the main model's.
Where Shapes is the server's own model, it paints the word itself, and nothing is said of another.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from streamlit.testing.v1 import AppTest

from services.common.api import pb
from services.common.client import ClassroomClient, ClientSettings
from tests.frontend.conftest import point_the_front_end_at
from tests.integration.helpers import collect
from tests.support.drawings import heart_png
from tests.support.frontend import page_file
from tests.support.servers import ServerThread, running_server

CODE, CLASS, WORD = "owl-27", "playground-owls", "heart"
STEPS = 12  # enough for the word to be the class's; what it looks like is lesson 10's benchmark
BESIDE = "This picture was painted by your class's own Shapes model, the one that learned “heart”"


def client_of(server: ServerThread, class_name: str = CLASS) -> ClassroomClient:
    return ClassroomClient(ClientSettings(inference_addr=server.address), class_name)


@pytest.fixture(scope="module")
def servers(settings, tmp_path_factory) -> Iterator[tuple[ServerThread, ServerThread]]:
    """The main service (the tiny model) and Shapes beside it, one Redis; the class has taught Shapes "heart"."""
    from tests.support.redis_server import RedisServer

    redis = RedisServer(tmp_path_factory.mktemp("beside-redis")).start()
    shared = {"redis_url": redis.url, "teacher_code": CODE}
    try:
        with (
            running_server(settings.model_copy(update=shared)) as main,
            running_server(settings.model_copy(update={**shared, "model": "shapes"})) as shapes,
        ):
            owls = client_of(shapes)
            try:
                for student in range(5):
                    owls.submit_drawing(heart_png(200 + student), f"owl-{student}", name=f"Owl {student}")
                final = list(owls.teach_word(CODE, WORD, STEPS))[-1]
                assert final.phase == pb.TEACHING_PHASE_TAUGHT and final.taught_word == WORD, final.message
            finally:
                owls.close()
            yield main, shapes
    finally:
        redis.stop()


@pytest.fixture
def beside(servers, monkeypatch) -> Iterator[tuple[ServerThread, ServerThread]]:
    """The front end of the class: its own service the tiny model's, Shapes beside it."""
    main, shapes = servers
    for _ in point_the_front_end_at(main.address, monkeypatch):
        monkeypatch.setenv("CLASSROOM_SHAPES_ADDR", shapes.address)
        monkeypatch.setenv("CLASSROOM_CLASS_NAME", CLASS)
        yield main, shapes


def generate(at: AppTest, prompt: str, seed: int) -> AppTest:
    """Type the prompt (the page checks it), then paint it small: 4 steps, 64 by 64 pixels."""
    at.text_area[0].input(prompt).run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    next(s for s in at.slider if s.label == "Steps").set_value(4)
    for box in at.selectbox:
        if box.label in ("Width", "Height"):
            box.set_value(64)
    at.number_input[0].set_value(seed)
    next(b for b in at.button if b.label == "Generate").click().run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    return at


def test_the_class_s_word_is_painted_by_its_shapes_model_and_other_prompts_by_the_main_one(beside):
    main, shapes = beside
    at = AppTest.from_file(str(page_file("playground")), default_timeout=180).run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    assert not at.info  # the main model's example: nothing is painted beside

    at.text_area[0].input("a blue heart on the right").run()
    # Before painting: the words are checked with the class's Shapes model, and the page says who paints it.
    assert [s.value for s in at.success] == [
        "Your class's own model learned every word of this prompt (“heart” is the word your class taught it)."
    ]
    said = [i.value for i in at.info]
    assert len(said) == 1 and "the word your class taught its own Shapes model, so that model paints it" in said[0]
    assert "Shapes runs beside Tiny (random weights), which paints every prompt without “heart”" in said[0]
    sizes = {box.label: box.options for box in at.selectbox if box.label in ("Width", "Height")}
    assert sizes == {"Width": ["64", "128"], "Height": ["64", "128"]}  # what Shapes can paint

    generate(at, "a blue heart on the right", seed=3)
    assert [s.value for s in at.subheader] == ["“a blue heart on the right”, seed 3"]
    assert any(c.value.startswith(BESIDE) for c in at.caption)
    run = at.session_state["result"]
    assert run.image.shape[:2] == (64, 64)
    # The trajectory is the one the Shapes service paints for this class (its key names the class's
    # model): not what another class's Shapes, which never learned the word, makes of the same request.
    owls, foxes = client_of(shapes), client_of(shapes, "playground-foxes")
    try:
        assert collect(owls.generate(run.request, "owl-check")).status.trajectory_key == run.key
        assert collect(foxes.generate(run.request, "fox-check")).status.trajectory_key != run.key
    finally:
        owls.close()
        foxes.close()

    # Shared with the class: kept by Shapes, seen by the teacher through the main service (one Redis).
    next(b for b in at.button if b.label == "Share with the class").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert [s.value for s in at.success][-1].startswith("Shared with the class")
    teacher = client_of(main)
    try:
        shared = [item.request.prompt for item in teacher.submissions(CODE).items]
        assert shared == ["a blue heart on the right"]

        # An ordinary prompt: the main model paints it, and nothing is said about Shapes.
        generate(at, "a lighthouse at night", seed=4)
        assert not at.info
        assert [s.value for s in at.subheader] == ["“a lighthouse at night”, seed 4"]
        assert not any(c.value.startswith(BESIDE) for c in at.caption)
        run = at.session_state["result"]
        assert collect(teacher.generate(run.request, "main-check")).status.trajectory_key == run.key
    finally:
        teacher.close()


def test_where_shapes_is_the_server_s_own_model_it_paints_the_class_s_word_itself(servers, monkeypatch):
    """No Shapes beside: the server's own Shapes paints the class's word, and nothing is said about another model."""
    _, shapes = servers
    for _ in point_the_front_end_at(shapes.address, monkeypatch):
        monkeypatch.setenv("CLASSROOM_CLASS_NAME", CLASS)
        at = AppTest.from_file(str(page_file("playground")), default_timeout=180).run()
        at.text_area[0].input("a blue heart on the right").run()
        assert [s.value for s in at.success] == [
            "Your class's own model learned every word of this prompt (“heart” is the word your class taught it)."
        ]
        assert not at.info
        generate(at, "a blue heart on the right", seed=3)
        assert [s.value for s in at.subheader] == ["“a blue heart on the right”, seed 3"]
        assert not any(c.value.startswith(BESIDE) for c in at.caption)
        run = at.session_state["result"]
        owls = client_of(shapes)
        try:
            assert collect(owls.generate(run.request, "owl-check")).status.trajectory_key == run.key
        finally:
            owls.close()
