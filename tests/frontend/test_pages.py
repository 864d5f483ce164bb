"""Every page through Streamlit's AppTest, against a real inference service and Redis (tiny model)."""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from tests.frontend.conftest import ROOT
from tests.support.frontend import page_file


def page(name: str) -> AppTest:
    at = AppTest.from_file(str(page_file(name)), default_timeout=120)
    return at.run()


def text_of(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [i.value for i in at.info]
    parts += [s.value for s in at.success] + [w.value for w in at.warning] + [t.value for t in at.title]
    return "\n".join(str(p) for p in parts)


def captions(at: AppTest) -> list[str]:
    return [caption for image in at.get("image") for caption in image.captions]


def player_key(at: AppTest, name: str) -> str:
    """The widget key of a page's trajectory player (its value: the step the student stopped on)."""
    return next(e.key for e in at.get("component_instance") if (e.key or "").startswith(f"{name}-"))


def charts(at: AppTest) -> int:
    return len(at.get("vega_lite_chart"))


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_home_reports_the_model_and_links_every_lesson(frontend_env):
    at = AppTest.from_file(str(ROOT / "frontend" / "app.py"), default_timeout=60).run()  # home is the default page
    assert_clean(at)
    assert "model (tiny) on cpu" in text_of(at)
    links = at.get("page_link")
    assert [link.proto.label.split("**")[1] for link in links][:6] == [
        "1. The whole pipeline",
        "2. Words to numbers",
        "3. From noise to image",
        "4. Guidance",
        "5. Change one word",
        "6. Seeds and schedulers",
    ]
    assert all(link.proto.page for link in links)  # each one leads to its page


def test_pipeline_names_the_three_stages_with_live_numbers(frontend_env):
    at = page("pipeline")
    assert_clean(at)
    text = text_of(at)
    assert [t.label for t in at.tabs] == ["① Text encoder", "② Denoising loop", "③ VAE decoder"]
    # The diagram, an SVG drawn on the server (nothing laid out in the browser), names the three stages and carries
    # the run's own numbers, in its words and in its text alternative.
    (diagram,) = [m.value for m in at.markdown if m.value.startswith("<svg")]
    assert 'role="img"' in diagram and not at.get("graphviz_chart")
    alternative = diagram.split('aria-label="')[1].split('"')[0]
    for stage in ("① Text encoder", "② Denoising loop: 4 steps", "③ VAE decoder", "77×32 vectors", "4×8×8"):
        assert stage in diagram
    for words in ("Diagram of the pipeline", "① Text encoder", "② Denoising loop: 4 steps", "③ VAE decoder", "4×8×8"):
        assert words in alternative
    assert "window always holds **77 tokens**" in text and "vectors of **32 numbers**" in text
    # The loop's thumbnails: the starting noise and five steps spread over the run, on one row; under it the
    # model's guess at the same steps, decoded (the tiny model's VAE is small enough to decode every step).
    assert [c for c in captions(at) if c.startswith(("start", "step"))] == ["start: noise"] + [
        f"step {n}" for n in (1, 2, 3, 4)
    ] * 2
    assert "**the model's guess, decoded by its VAE**" in [m.value for m in at.markdown]
    # 64x64 pictures in the test catalog: a 4x8x8 latent, 48 times fewer numbers than the image.
    assert "4×8×8 = **256** numbers" in text and "**12,288**" in text and "**48× fewer**" in text
    assert "served from the lesson cache" in text


def test_words_shows_real_tokens_truncation_and_similarity(frontend_env):
    at = page("words")
    assert_clean(at)
    text = text_of(at)
    assert "**8 pieces**" in text and "astronaut" in text
    at.text_input[0].input(" ".join(["zebra"] * 80)).run()
    assert_clean(at)
    assert any("zebra zebra zebra zebra zebra" in w.value for w in at.warning)
    assert "Position 0 (start token): 1.000" in text_of(at)


def test_noise_to_image_moves_through_every_step(frontend_env):
    at = page("noise_to_image")
    assert_clean(at)
    key = player_key(at, "noise-player")  # the step the student stops on in the player (frontend/player)
    for step in (0, 1, 4):
        at.session_state[key] = step
        at.run()
        assert_clean(at)
    assert "This run visits 4 noise levels, from t = 751 down to t = 1" in text_of(at)
    assert charts(at) == 1
    assert "**The four channels of the latent at step 4**" in text_of(at)
    assert [c for c in captions(at) if "channel" in c] == [f"x_t: channel {i}" for i in range(4)]


def test_guidance_shows_the_branches_and_the_scales(frontend_env):
    at = page("guidance")
    assert_clean(at)
    shown = captions(at)
    player = next(e for e in at.get("component_instance") if e.key.startswith("guidance-player"))
    panels = json.loads(player.proto.json_args)  # what the trajectory player was sent
    assert panels["panels"][0] == "u: unconditional (channel 0)" and "c − u: what the prompt adds" in panels["panels"]
    assert [c for c in shown if c.startswith("g = ")] == ["g = 0", "g = 1", "g = 7", "g = 20"]
    text = text_of(at)
    assert "skips guidance for g ≤ 1" in text
    assert "guidance multiplies it by 7" in panels["frames"][0]["note"]


def test_guidance_live_slider_generates(frontend_env):
    at = page("guidance")
    next(s for s in at.slider if s.label == "Guidance scale g").set_value(2.5)
    next(t for t in at.text_input if t.label.startswith("Negative prompt")).input("fog")
    at.button[0].click().run()
    assert_clean(at)
    # The student's run stands in the row of scales, between g = 1 and g = 7.
    row = [c for c in captions(at) if c.startswith(("g = ", "yours"))]
    assert row == ["g = 0", "g = 1", "yours: g = 2.5, negative prompt “fog”", "g = 7", "g = 20"]


def test_change_one_word_starts_from_the_same_noise(frontend_env):
    at = page("change_one_word")
    assert_clean(at)
    assert charts(at) == 2  # the distance per step, and both paths in 2-D
    key = player_key(at, "change-player")
    at.session_state[key] = 0
    at.run()
    assert "the circled points are step 0" in text_of(at)
    at.session_state[key] = 3
    at.run()
    assert_clean(at)
    assert "the circled points are step 3" in text_of(at)


def test_seeds_and_schedulers_show_every_cached_example(frontend_env):
    at = page("seeds_schedulers")
    assert_clean(at)
    text = text_of(at)
    for scheduler in ("DDIM", "PNDM", "LMS", "Euler", "Euler Ancestral", "DPM-Solver++"):
        assert f"**{scheduler}**" in text
    assert "dpm_solver_pp" not in text and "euler_ancestral" not in text
    assert charts(at) == 1
    assert [c for c in captions(at) if c.startswith("seed")] == ["seed 1", "seed 2", "seed 3"]
    assert captions(at).count("3 steps") == 6 and captions(at).count("5 steps") == 6


def test_playground_generates_and_offers_downloads(frontend_env):
    at = page("playground")
    assert_clean(at)
    at.text_area[0].input("a lighthouse at night")
    at.slider[0].set_value(3)
    for box in at.selectbox:
        if box.label in ("Width", "Height"):
            box.set_value(64)
    at.number_input[0].set_value(7)
    next(b for b in at.button if b.label == "Generate").click().run()
    assert_clean(at)
    assert "“a lighthouse at night”, seed 7" in [s.value for s in at.subheader]
    labels = [b.label for b in at.get("download_button")]
    assert labels == ["Download the image (PNG)", "Download the denoising (GIF)"]


def test_playground_explains_a_bad_prompt(frontend_env):
    at = page("playground")
    at.text_area[0].input("   ")
    next(b for b in at.button if b.label == "Generate").click().run()
    assert not at.exception
    assert [e.value for e in at.error] == ["Please type a prompt: it is empty."]


@pytest.mark.parametrize("name", ["home", "words", "playground"])
def test_server_down_is_a_plain_sentence(name, monkeypatch):
    from frontend.client import get_client
    from tests.support.servers import free_port

    monkeypatch.setenv("CLASSROOM_INFERENCE_ADDR", f"127.0.0.1:{free_port()}")
    get_client.clear()
    try:  # home links to the other pages: it runs inside the app that names them
        at = (
            AppTest.from_file(str(ROOT / "frontend" / "app.py"), default_timeout=60).run()
            if name == "home"
            else page(name)
        )
    finally:
        get_client.clear()
    assert not at.exception
    assert any("cannot be reached right now" in e.value for e in at.error)


def test_the_app_lists_every_lesson(frontend_env):
    at = AppTest.from_file(str(ROOT / "frontend" / "app.py"), default_timeout=60).run()
    assert not at.exception
    assert "Diffusion Classroom" in [t.value for t in at.title]


def test_a_class_code_and_a_name_come_before_the_lessons(frontend_env, monkeypatch):
    monkeypatch.setenv("CLASSROOM_CLASS_CODE", "owl-42")
    at = AppTest.from_file(str(ROOT / "frontend" / "app.py"), default_timeout=60).run()
    assert not at.exception
    assert "Type the class code" in text_of(at) and "model (tiny)" not in text_of(at)
    code, name = at.text_input
    code.input("owl-41")
    name.input("Zoë")
    at.button[0].click().run()
    assert [e.value for e in at.error] == ["That class code is not right. Ask your teacher for it."]
    at.text_input[0].input("owl-42")
    at.button[0].click().run()
    assert not at.exception and not at.error
    assert at.session_state.display_name == "Zoë"
    assert "model (tiny)" in text_of(at)  # the lessons are open
    # The name travels with each generation (as UTF-8 metadata): a non-ASCII name must work.
    at.switch_page("screens/playground.py").run()
    for box in at.selectbox:
        if box.label in ("Width", "Height"):
            box.set_value(64)
    at.slider[0].set_value(2)
    next(b for b in at.button if b.label == "Generate").click().run()
    assert not at.exception and not at.error
    assert next(b.label for b in at.get("download_button")) == "Download the image (PNG)"


@pytest.fixture
def teacher_env(settings, monkeypatch):
    """A service and a front end that both know the teacher code."""
    from frontend.client import get_client
    from tests.support.servers import running_server

    config = settings.model_copy(update={"redis_url": "", "teacher_code": "owl-42", "max_batch_size": 1})
    with running_server(config) as server:
        monkeypatch.setenv("CLASSROOM_INFERENCE_ADDR", server.address)
        monkeypatch.setenv("CLASSROOM_TEACHER_CODE", "owl-42")
        get_client.clear()
        yield server
        get_client.clear()


def test_the_teacher_page_refuses_a_student_and_serves_the_teacher(teacher_env):
    at = page("teacher")
    assert not at.exception and "Type the teacher code" in text_of(at)
    at.text_input[0].input("owl-41")  # a student trying their luck
    at.button[0].click().run()
    assert [e.value for e in at.error] == ["This page is for the teacher, and that teacher code is not right."]
    assert not any(b.label == "Pause generation" for b in at.button)

    at.text_input[0].input("owl-42")
    at.button[0].click().run()
    assert_clean(at)
    assert [m.label for m in at.metric][:4] == [
        "Generating now",
        "Waiting",
        "Served without computing",  # no GPU here: not "without the GPU"
        "Blocked prompts",
    ]
    assert "Nobody is generating right now." in text_of(at)
    assert next(m.value for m in at.metric if m.label == "Pictures per UNet call") == "none yet"  # a fresh server
    next(b for b in at.button if b.label == "Pause generation").click().run()
    assert teacher_env.classroom.scheduler.paused  # the service itself is paused
    assert "Generation is paused" in text_of(at)
    next(b for b in at.button if b.label == "Resume generation").click().run()
    assert not teacher_env.classroom.scheduler.paused


def test_the_teacher_page_is_off_without_a_teacher_code(frontend_env):
    at = page("teacher")
    assert not at.exception
    assert "The teacher's page is off on this server" in "\n".join(i.value for i in at.info)
    assert not at.text_input  # nothing to type a code into


def test_the_model_page_gives_the_running_models_numbers(frontend_env):
    at = page("model")
    assert_clean(at)
    assert "The model: Tiny (random weights)" in [t.value for t in at.title]
    table = at.table[0].value
    # The tiny model's own sizes (tests/conftest's tiny build), never SD's constants.
    assert table.loc["text encoder"].iloc[0] == "2 layers, vectors of 32 numbers"
    assert table.loc["UNet channels"].iloc[0] == "32, 64"
    assert table.loc["picture"].iloc[0] == "512 × 512"


def test_lesson_8_shows_a_picture_per_switch_and_the_shared_steps(frontend_env):
    at = page("branch")
    assert_clean(at)
    assert captions(at)[:4] == ["the new prompt from the start", "k = 2", "k = 4", "never switched"]
    assert "From **a red fox sitting in a snowy forest, oil painting** to **a white owl" in text_of(at)
    assert player_key(at, "branch-player")
    assert charts(at) == 1  # the distance from the original, zero up to the switch
    # The student's own pair: the page counts the steps both runs share, and it is k.
    form = at.get("text_input")
    form[0].input("a lighthouse at dusk")
    form[1].input("a castle at noon")
    at.slider[0].set_value(3)
    at.number_input[0].set_value(5)
    next(b for b in at.button if b.label == "Run both").click().run()
    assert_clean(at)
    assert "share their first **3** steps exactly" in text_of(at)


def test_the_teacher_sees_who_is_signed_in_and_removes_a_name(teacher_env):
    from frontend.client import get_client

    get_client().join_class("Robin", "robin-tab", "10.0.0.4")
    get_client().join_class("Ms Rivera (teacher)", "prank-tab", "10.0.0.5")
    at = page("teacher")
    at.text_input[0].input("owl-42")
    at.button[0].click().run()
    assert_clean(at)
    shown = [t.value for t in at.text]
    assert "Robin" in shown and "Ms Rivera (teacher)" in shown
    next(b for b in at.button if b.key == "teacher-remove--Ms Rivera (teacher)").click().run()
    assert_clean(at)
    entries = {(e.name, e.removed) for e in teacher_env.call(teacher_env.classroom.students)}
    assert entries == {("Robin", False), ("Ms Rivera (teacher)", True)}
    assert "Ms Rivera (teacher): removed" in [t.value for t in at.text]
    next(b for b in at.button if b.label == "Let back").click().run()
    students = teacher_env.call(teacher_env.classroom.students)
    assert ("Ms Rivera (teacher)", True) not in {(e.name, e.removed) for e in students}
