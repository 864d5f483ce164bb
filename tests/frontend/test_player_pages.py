"""The player in the lessons and the Playground, and the Playground's one status per stream (AppTest, tiny model)."""

from __future__ import annotations

import json
import threading
import time

import pytest
from streamlit.testing.v1 import AppTest

from tests.support.frontend import page_file

# The first words of every status line (frontend/stream/progress.py), one per state or kind of wait.
STATUS_STARTS = (
    "Asking the image server",
    "Starting:",
    "Waiting for the model",
    "You are next",
    "Reading from the cache",
    "The model is computing",
    "A classmate asked",
    "Your teacher has paused",
    "Done:",
    "You stopped",
    "Your teacher cleared",
    "The image server went away",
)


def page(name: str) -> AppTest:
    return AppTest.from_file(str(page_file(name)), default_timeout=120).run()


def player(at: AppTest, key: str) -> tuple[str, dict]:
    """The player's widget key and what it was sent (AppTest shows a component as an unknown element)."""
    element = next(e for e in at.get("component_instance") if (e.key or "").startswith(f"{key}-"))
    return element.key, json.loads(element.proto.json_args)


def statuses(at: AppTest) -> list[str]:
    """Every status line on the page, whatever element shows it."""
    shown = [e.value for kind in ("info", "warning", "error", "caption", "success") for e in at.get(kind)]
    shown += [e.proto.text for e in at.get("progress")]
    return [text for text in map(str, shown) if text.startswith(STATUS_STARTS)]


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def generate(at: AppTest, prompt: str, steps: int = 3) -> AppTest:
    at.text_area[0].input(prompt)
    at.slider[0].set_value(steps)
    for box in at.selectbox:
        if box.label in ("Width", "Height"):
            box.set_value(64)
    at.number_input[0].set_value(7)
    return next(b for b in at.button if b.label == "Generate").click().run()


def test_noise_to_image_plays_every_step_and_follows_the_stopped_step(frontend_env):
    at = page("noise_to_image")
    assert_clean(at)
    key, sent = player(at, "noise-player")
    # The starting noise and the 4 steps, each with its noise level; the guess from step 1 on.
    assert [f["label"] for f in sent["frames"]] == ["the starting noise (step 0 of 4)"] + [
        f"step {k} of 4" for k in range(1, 5)
    ]
    assert sent["frames"][0]["pictures"][1] is None and all(f["pictures"][1] for f in sent["frames"][1:])
    assert all(f["t"] is not None for f in sent["frames"][1:])
    assert [f["t"] for f in sent["frames"][1:]] == sorted((f["t"] for f in sent["frames"][1:]), reverse=True)
    assert sent["report"] is True and sent["start"] == 1
    assert all(p.startswith("data:image/png;base64,") for p in sent["frames"][1]["pictures"])
    # The step the student stops on comes back: the channels and the chart follow it.
    for step in (0, 4):
        at.session_state[key] = step
        at.run()
        assert_clean(at)
        assert any(f"latent at step {step}**" in m.value for m in at.markdown)
    assert player(at, "noise-player")[0] == key  # the same player: its place in the browser is kept


def test_guidance_plays_the_four_predictions_step_by_step(frontend_env):
    at = page("guidance")
    assert_clean(at)
    _, sent = player(at, "guidance-player")
    assert sent["panels"][:3] == [
        "u: unconditional (channel 0)",
        "c: conditional (channel 0)",
        "c − u: what the prompt adds",
    ]
    assert sent["panels"][4].startswith("where this step leads: the model's guess")
    assert len(sent["frames"]) == 4 and all(len(f["pictures"]) == 5 for f in sent["frames"])
    assert all("guidance multiplies it by 7" in f["note"] for f in sent["frames"])
    assert len({f["note"] for f in sent["frames"]}) == 4  # each step's own numbers


def test_change_one_word_plays_both_guesses_together(frontend_env):
    at = page("change_one_word")
    assert_clean(at)
    key, sent = player(at, "change-player")
    # The tiny model's small VAE decodes every step by default: both guesses, and both decoded.
    assert len(sent["frames"]) == 5 and all(len(f["pictures"]) == 4 for f in sent["frames"])
    first = sent["frames"][0]["pictures"]
    assert first[0] == first[1]  # the same seed: the same starting noise
    assert [c for image in at.get("image") for c in image.captions].count("final image") == 2
    at.session_state[key] = 3
    at.run()
    assert_clean(at)
    assert any("are step 3" in m.value for m in at.markdown)


def test_examples_say_whether_they_are_ready(frontend_env):
    at = page("noise_to_image")
    assert_clean(at)
    box = at.selectbox[0]
    assert box.options and all(option.endswith("· ready") for option in box.options)  # the catalog is precomputed

    from frontend.material.examples import Example
    from services.common.api import pb

    fresh = pb.GenerateRequest(prompt="a lighthouse", num_inference_steps=6, width=64, height=64, seed=99)
    example = Example("new", {}, fresh.SerializeToString(), cached=False)
    assert example.readiness().startswith("not ready: about ")  # the front end has timed steps of this size


@pytest.fixture
def cold_lessons(settings, monkeypatch):
    """A service with the lesson catalog, nothing rendered and no cache: every example is computed when opened."""
    from tests.frontend.conftest import LESSON_CATALOG, point_the_front_end_at
    from tests.support.servers import running_server

    config = settings.model_copy(update={"redis_url": "", "catalog": LESSON_CATALOG})
    with running_server(config) as server:
        for _ in point_the_front_end_at(server.address, monkeypatch):
            yield server


def test_a_cold_example_is_marked_not_ready_until_it_is_computed(cold_lessons):
    at = page("noise_to_image")
    assert_clean(at)
    first, second = at.selectbox[0].options[:2]
    assert first.endswith("· not ready: 4 steps to compute")  # said before it was computed
    assert "· not ready" in second
    at.run()  # the page again: the example it computed is ready now, the others not yet
    options = at.selectbox[0].options
    assert options[0].endswith("· ready") and "· not ready: about " in options[1]
    player(at, "noise-player")  # and it plays
    # The student picks the second: it is computed, its mark changes, and it stays picked.
    at.selectbox[0].select_index(1).run()
    assert_clean(at)
    at.run()
    assert at.selectbox[0].index == 1 and at.selectbox[0].options[1].endswith("· ready")


def test_playground_ends_with_one_status_and_a_player(frontend_env):
    at = page("playground")
    assert_clean(at)
    generate(at, "a lighthouse at night")
    assert_clean(at)
    shown = statuses(at)
    assert len(shown) == 1 and shown[0].startswith("Done: 3 steps in "), shown
    assert "“a lighthouse at night”, seed 7" in [s.value for s in at.subheader]
    _, sent = player(at, "playground-player")
    assert len(sent["frames"]) == 4 and sent["report"] is False and sent["start"] == 3
    # Another rerun (any widget) shows the same one status, its time stopped.
    at.run()
    assert statuses(at) == shown


def test_playground_warns_when_the_prompt_is_cut_to_77_tokens(frontend_env):
    at = page("playground")
    long = " ".join(["zebra"] * 80) + " on a bright green meadow"
    generate(at, long)
    assert_clean(at)
    warnings = [w.value for w in at.warning]
    assert any("Only 75 pieces" in w and "bright green meadow" in w for w in warnings), warnings
    heading = next(s.value for s in at.subheader if s.value.endswith("seed 7"))
    assert len(heading) < 70 and "…" in heading  # a short heading; the whole prompt is written under it
    assert any("The whole prompt" in c.value for c in at.caption)


def test_a_long_paste_is_cut_to_the_limit_not_dropped(frontend_env):
    at = page("playground")
    pasted = "a red circle on the left " * 60  # 1,500 characters
    generate(at, pasted)
    assert not at.exception
    assert at.text_area[0].value == pasted[:1000]  # the box keeps what is used, not nothing
    assert any("had 1,500 characters" in w.value and "first 1,000" in w.value for w in at.warning)
    assert any(s.startswith("Done:") for s in statuses(at))


@pytest.fixture
def paused_class(settings, monkeypatch):
    """A service and a front end that know the teacher code, with the teacher's pause on."""
    from frontend.client import get_client
    from frontend.stream.store import lesson_store
    from frontend.stream.waiting import class_paused
    from tests.support.servers import client_for, running_server

    config = settings.model_copy(update={"redis_url": "", "teacher_code": "owl-42", "max_batch_size": 1})
    with running_server(config) as server:
        monkeypatch.setenv("CLASSROOM_INFERENCE_ADDR", server.address)
        monkeypatch.setenv("CLASSROOM_TEACHER_CODE", "owl-42")
        for cached in (get_client, class_paused, lesson_store):
            cached.clear()
        teacher = client_for(server.address)
        teacher.set_paused("owl-42", True)
        yield server, teacher
        teacher.close()
        for cached in (get_client, class_paused, lesson_store):
            cached.clear()


def test_a_cleared_picture_shows_only_the_clear(paused_class):
    """Paused, then cleared by the teacher: the page ends with the clear alone (no place in the queue)."""
    _, teacher = paused_class
    seen_paused: list[bool] = []

    def teacher_clears() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            room = teacher.classroom("owl-42")
            if any(not job.running for job in room.jobs):
                time.sleep(3)  # long enough for the page to learn that the class is paused
                seen_paused.append(room.paused)
                teacher.clear_queue("owl-42")
                return
            time.sleep(0.1)

    clearing = threading.Thread(target=teacher_clears)
    clearing.start()
    at = page("playground")
    generate(at, "a lighthouse at night")
    clearing.join()
    assert seen_paused == [True]
    assert not at.exception
    shown = statuses(at)
    assert shown == ["Your teacher cleared the queue, so this picture was not made. You can ask for it again."]
    assert not at.get("download_button")
