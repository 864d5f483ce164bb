"""The class gallery through the pages (AppTest): share from the Playground, approve, see it, open it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from streamlit.testing.v1 import AppTest

from tests.support.frontend import page_file
from tests.support.servers import ServerThread, client_for, running_server

CODE = "owl-42"


@pytest.fixture
def class_server(settings, fresh_redis, monkeypatch) -> Iterator[ServerThread]:
    """A service with the teacher code and a Redis of its own, and the front end pointed at it."""
    from frontend.client import get_client
    from frontend.stream.store import lesson_store
    from frontend.together.student_side import class_watcher

    config = settings.model_copy(update={"redis_url": fresh_redis("gallery").url, "teacher_code": CODE})
    with running_server(config) as server:
        monkeypatch.setenv("CLASSROOM_INFERENCE_ADDR", server.address)
        for cached in (get_client, lesson_store, class_watcher):
            cached.clear()
        yield server
        for cached in (get_client, lesson_store, class_watcher):
            cached.clear()


def playground_picture(prompt: str, seed: int) -> AppTest:
    """A student's Playground, with a small picture made."""
    at = AppTest.from_file(str(page_file("playground")), default_timeout=120).run()
    at.text_area[0].input(prompt)
    at.slider[0].set_value(3)
    for box in at.selectbox:
        if box.label in ("Width", "Height"):
            box.set_value(64)
    at.number_input[0].set_value(seed)
    next(b for b in at.button if b.label == "Generate").click().run()
    assert not at.exception and not at.error
    return at


def share(at: AppTest) -> None:
    next(b for b in at.button if b.label == "Share with the class").click().run()
    assert not at.exception and not at.error
    assert [s.value for s in at.success] == [
        "Shared with the class: your teacher will look at it before it appears in the gallery."
    ]


def gallery_text(at: AppTest) -> str:
    return "\n".join([m.value for m in at.markdown] + [c.value for c in at.caption] + [i.value for i in at.info])


def test_a_shared_picture_reaches_the_gallery_once_approved_and_opens_in_the_player(class_server):
    teacher = client_for(class_server.address)
    share(playground_picture("a lighthouse at night", 7))
    share(playground_picture("a *bold* [link](http://example.com)", 8))

    classmate = AppTest.from_file(str(page_file("gallery")), default_timeout=120).run()
    assert "Nothing in the gallery yet" in gallery_text(classmate)  # both wait for the teacher

    submissions = {item.request.prompt: item for item in teacher.submissions(CODE).items}
    assert len(submissions) == 2
    teacher.review_submission(CODE, submissions["a lighthouse at night"].id, approve=True)
    teacher.review_submission(CODE, submissions["a *bold* [link](http://example.com)"].id, approve=True)
    classmate.run()
    text = gallery_text(classmate)
    assert "“a lighthouse at night”" in text and "seed 7" in text
    from frontend.drawing.views import plain

    shown = {s.name: s.display_name for s in teacher.model_info().schedulers}  # as the Playground names them
    assert f"· {plain(shown[submissions['a lighthouse at night'].request.scheduler])}" in text
    # Shown as typed: escaped, never bold text or a link.
    assert "“a \\*bold\\* \\[link\\]\\(http\\:\u2060//example\\.com\\)”" in text  # a word joiner breaks the autolink
    assert text.index("bold") < text.index("lighthouse")  # newest first

    teacher.review_submission(CODE, submissions["a *bold* [link](http://example.com)"].id, approve=False)
    classmate.run()
    assert "bold" not in gallery_text(classmate)
    next(b for b in classmate.button if b.label == "Open in the player").click().run()
    assert not classmate.exception and not classmate.error
    players = [e.key for e in classmate.get("component_instance") if (e.key or "").startswith("gallery-player-")]
    assert len(players) == 1
    assert teacher.clear_gallery(CODE) == 2
    teacher.close()


def test_in_present_mode_the_follow_page_shows_the_example_at_the_step_and_the_class_map(class_server):
    import time

    from frontend.together.student_side import class_watcher

    teacher = client_for(class_server.address)
    for seed in (1, 2):
        key = share_and_key(teacher, "a lighthouse at night", seed)
        item = teacher.share_to_gallery(key, f"s-{seed}", f"Student {seed}")
        teacher.review_submission(CODE, item.id, approve=True)
    entry = teacher.lessons().entries[0]
    teacher.set_present(CODE, True, entry.id, step=1, show_map=True)
    deadline = time.monotonic() + 30
    while not class_watcher().state() or not class_watcher().state().present.leading:
        assert time.monotonic() < deadline, "the watcher never heard the class's state"
        time.sleep(0.1)
    at = AppTest.from_file(str(page_file("follow")), default_timeout=120).run()
    assert not at.exception and not at.error
    assert "Your teacher is on step 1 of" in gallery_text(at)
    assert any((e.key or "").startswith("follow-") for e in at.get("component_instance"))  # the player
    assert "The class map" in [s.value for s in at.subheader] and len(at.get("vega_lite_chart")) == 1
    teacher.set_present(CODE, False)
    teacher.close()


def share_and_key(front_end, prompt: str, seed: int) -> str:
    """A small picture made through the service (as a student), its trajectory key."""
    from tests.integration.helpers import collect, request

    message = request(prompt, seed=seed, num_inference_steps=3, width=64, height=64)
    return collect(front_end.generate(message, f"s-{seed}")).status.trajectory_key
