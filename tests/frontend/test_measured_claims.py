"""Lessons 1, 3, 4 and 5, the model page, Welcome and the class map say only what their run shows.

Each sentence about what the model did is checked against the run it describes: the test
computes the same measure (frontend/material/claims.py) from the same trajectory, fetched through
the API, and finds the page's sentence. On Shapes, the model of a classroom with no GPU.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from frontend.material import claims
from frontend.stream.load import request_with
from frontend.stream.wire import Step, TrajectoryView
from frontend.together.map_chart import PROMPT_COLOURS, class_map_chart
from services.common.api import pb
from services.common.shapes_judge import judge
from services.inference.diffusion.tiny import SD1_SCHEDULER_CONFIG
from services.lessons.catalog import DEFAULT_CATALOG
from tests.frontend.conftest import ROOT, point_the_front_end_at
from tests.frontend.test_lesson_labels import charts
from tests.support.frontend import page_file
from tests.support.servers import ServerThread, client_for, running_server

SHAPES_SCHEDULER = ROOT / "services" / "shapes" / "model" / "scheduler" / "scheduler_config.json"


# --- The measures themselves ---------------------------------------------------------------------------------------


def diffusers_timesteps(scheduler: str, spacing: str | None, steps: int, config: dict | None = None) -> list[float]:
    from diffusers import EulerDiscreteScheduler, LMSDiscreteScheduler

    config = dict(config or SD1_SCHEDULER_CONFIG)
    if spacing is not None:
        config["timestep_spacing"] = spacing
    kind = {"euler": EulerDiscreteScheduler, "lms": LMSDiscreteScheduler}[scheduler]
    made = kind.from_config(config)
    made.set_timesteps(steps)
    return [float(t) for t in made.timesteps]


@pytest.mark.parametrize("spacing", ["linspace", "leading", "trailing"])
@pytest.mark.parametrize("steps", [4, 25, 50])
def test_the_spacing_is_read_from_the_runs_own_noise_levels(spacing: str, steps: int):
    for scheduler in ("euler", "lms"):
        assert claims.spacing(diffusers_timesteps(scheduler, spacing, steps), 1000) == spacing


def test_the_noise_levels_sentence_tells_whole_from_fractional_levels():
    # SD 1.5's config names no spacing: diffusers' LMS then visits mostly fractional t.
    sd = claims.noise_levels_sentence(diffusers_timesteps("lms", None, 50), 1000)
    assert "This run visits 50 noise levels, from t = 999 down to t = 0 (999, 978.6, 958.2" in sd
    assert "Only 2 of them are trained levels" in sd and '"linspace"' in sd and "50 of the" not in sd
    shapes = claims.noise_levels_sentence(diffusers_timesteps("euler", "leading", 50), 1000)
    assert "from t = 981 down to t = 1 (981, 961, 941" in shapes and "All 50 are trained levels" in shapes
    assert '"leading"' in shapes


def test_a_sigma_form_latent_is_divided_back_to_x_t():
    sigmas = [14.6, 7.0, 2.0, 0.5]
    noise = np.random.default_rng(0).standard_normal((5, 4, 8, 8)).astype(np.float32)
    run = TrajectoryView(initial_latent=noise[0] * np.sqrt(1 + sigmas[0] ** 2))
    for index, sigma in enumerate(sigmas):
        after = sigmas[index + 1] if index + 1 < len(sigmas) else 0.0
        latent = noise[index + 1] * np.sqrt(1 + after**2)
        empty = dict.fromkeys(("predicted_x0", "latent_preview", "x0_preview", "decoded_x0", "noise"))
        run.steps.append(Step(index=index, timestep=999.0 - index, sigma=sigma, latent=latent, seconds=0.0, **empty))
    carried = [float(x.std()) for x in run.latents()]
    assert carried[0] > 14  # what the loop carries: about sigma at the start
    shown = [float(x.std()) for x in claims.x_t_latents(run, True)]
    assert all(0.8 < spread < 1.2 for spread in shown), shown
    assert claims.x_t_latents(run, False)[0] is run.initial_latent  # x_t already, for DDIM and the like


def test_the_high_guidance_sentence_says_what_the_pictures_show():
    grey = np.full((64, 64, 3), 200, np.uint8)
    red = grey.copy()
    red[:32] = (230, 20, 20)
    same = claims.high_guidance_sentence((7, grey), (20, grey.copy()))
    assert "differ by 0.0 of 255 brightness levels per pixel on average (next to nothing)" in same
    assert "about as saturated (0% and 0%)" in same
    apart = claims.high_guidance_sentence((7, grey), (20, red))
    assert "(clearly)" in apart and "g = 20's colours are more saturated (46% against 0%)" in apart
    assert claims.mean_difference(grey, red) == pytest.approx(np.abs(red.astype(int) - 200).mean())


def test_parting_and_settling_are_read_off_the_curves():
    distances = [0.0, 0.1, 0.3, 0.6, 0.8, 0.7]
    sentence = claims.parting_sentence(distances, [20.0, 30.0, 12.0, 10.0, 9.0])
    assert "furthest apart at step 4 (0.80) and reach half of that at step 3 of 5" in sentence
    assert "differ by 20.0 of 255 brightness levels per pixel at step 1, by 30.0 at most (step 2)" in sentence
    assert "by 9.0 at the end" in sentence
    # Changes made by steps 2 to 6: the largest at step 3, under a tenth of it from step 5 on.
    assert claims.settling_sentence([0.5, 1.0, 0.2, 0.05, 0.01]).startswith(
        "On this run the guess's numbers change most at step 3; from step 5 of 6 on, every step changes them by "
        "less than a tenth of that"
    )


def lab(colour: str) -> np.ndarray:
    """CIE L*a*b* of an sRGB hex colour (D65), for colour differences as people see them."""
    rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)]) / 255
    linear = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    matrix = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = matrix @ linear / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def test_the_class_map_gives_each_prompt_a_clearly_different_colour():
    # Every two of the palette's colours are far apart (CIE76 difference over 20; 2.3 is just noticeable).
    labs = [lab(c) for c in PROMPT_COLOURS]
    closest = min(np.linalg.norm(a - b) for i, a in enumerate(labs) for b in labs[:i])
    assert closest > 20, closest
    paths = [
        pb.ClassMapPath(prompt=prompt, x=[0.0, 1.0], y=[0.0, float(n)], student_name="Ada", seed=n)
        for n, prompt in enumerate(["a red circle on the left", "a blue square", "a red circle on the left"])
    ]
    spec = class_map_chart(pb.ClassMap(paths=paths, explained_variance=0.9)).to_dict()
    scale = spec["layer"][0]["encoding"]["color"]["scale"]
    assert scale["domain"] == ["a red circle on the left", "a blue square"]  # one colour per prompt, not per path
    assert scale["range"] == ["#0072B2", "#E69F00"]  # blue and orange, never two blues


def test_the_welcome_page_lists_every_numbered_lesson_once():
    def strings(path: Path) -> list[str]:
        return [n.value for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Constant)]

    menu = [s for s in strings(ROOT / "frontend" / "app.py") if isinstance(s, str) and re.match(r"\d+\. ", s)]
    welcome = [s for s in strings(page_file("home")) if isinstance(s, str)]
    assert len(menu) >= 8
    for title in menu:
        assert welcome.count(title) == 1, title


def model_page_schedule() -> str:
    """The Shapes sentence of the model page, as its source holds it."""
    tree = ast.parse(page_file("model").read_text())
    (node,) = [n for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "SHAPES_SCHEDULE"]
    return ast.literal_eval(node.value)


def test_the_model_page_says_how_shapes_schedule_differs_from_sd():
    from diffusers import EulerDiscreteScheduler

    shapes_config = json.loads(SHAPES_SCHEDULER.read_text())
    sentence = model_page_schedule()
    # The same noise schedule (betas and training steps)...
    for key in ("beta_start", "beta_end", "beta_schedule", "num_train_timesteps"):
        assert shapes_config[key] == SD1_SCHEDULER_CONFIG[key], key
    # ...and a different spacing: its name, its levels and Euler's first sigma, for each model, as diffusers makes them.
    for config, name in ((shapes_config, "shapes"), (SD1_SCHEDULER_CONFIG, "sd")):
        euler = EulerDiscreteScheduler.from_config(config)
        euler.set_timesteps(50)
        levels = [float(t) for t in euler.timesteps]
        spacing = claims.spacing(levels, 1000)
        assert f'"{spacing}"' in sentence, name
        assert f"t = {levels[0]:g} to t = {levels[-1]:g}" in sentence, name
        assert f"σ = {float(euler.sigmas[0]):.2f}" in sentence, name
    assert "every 20th" in sentence and shapes_config["timestep_spacing"] == "leading"


# --- The pages on Shapes, checked against their own runs ---------------------------------------------------------


@pytest.fixture(scope="module")
def shapes_server(settings) -> Iterator[ServerThread]:
    with running_server(settings.model_copy(update={"model": "shapes", "catalog": DEFAULT_CATALOG})) as server:
        yield server


@pytest.fixture
def shapes_env(shapes_server, monkeypatch) -> Iterator[str]:
    yield from point_the_front_end_at(shapes_server.address, monkeypatch)


def open_page(name: str) -> AppTest:
    at = AppTest.from_file(str(page_file(name)), default_timeout=300).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def text_of(at: AppTest) -> str:
    return "\n".join([m.value for m in at.markdown] + [c.value for c in at.caption])


def shapes_run(address: str, student: str = "claims-test", **labels: str) -> TrajectoryView:
    """A prompt-pairs example's trajectory through the API, as the lesson loads it (the same request and probes)."""
    client = client_for(address)
    try:
        (entry,) = [
            e for e in client.lessons("prompt-pairs").entries if all(e.labels[k] == v for k, v in labels.items())
        ]
        run = TrajectoryView()
        for response in client.generate(request_with(entry.request), student):
            run.add(response)
        return run
    finally:
        client.close()


def shapes_runs(address: str, *label_sets: dict[str, str]) -> list[TrajectoryView]:
    """Several examples at once, as several students: the service batches their steps."""
    with ThreadPoolExecutor(len(label_sets)) as pool:
        jobs = [pool.submit(shapes_run, address, f"claims-test-{i}", **labels) for i, labels in enumerate(label_sets)]
        return [job.result() for job in jobs]


def expected_lesson_3(run: TrajectoryView, info: pb.GetModelInfoResponse) -> tuple[list[str], list[float]]:
    """Lesson 3's measured sentences, and its chart's changes of x_t, computed here from the run."""
    in_sigma_form = claims.sigma_form(info, run)
    x_t = claims.x_t_latents(run, in_sigma_form)
    guesses = claims.rms_changes([s.predicted_x0 for s in run.steps])
    sentences = [
        f"Here x starts at σ = {run.steps[0].sigma:.2f}, with a spread (standard deviation) of "
        f"{float(run.latents()[0].std()):.2f} against 1",
        claims.settling_sentence(guesses),
        claims.noise_levels_sentence(run.timesteps, info.num_train_timesteps),
    ]
    return sentences, claims.rms_changes(x_t)


def expected_lesson_4(runs: dict[str, TrajectoryView]) -> str:
    return claims.high_guidance_sentence((7.0, runs["7"].image), (20.0, runs["20"].image)) + (
        f" For comparison, g = 0 and g = 7 differ by {claims.mean_difference(runs['0'].image, runs['7'].image):.1f}."
    )


def expected_lesson_5(a: TrajectoryView, b: TrajectoryView, info: pb.GetModelInfoResponse) -> tuple[str, list[float]]:
    in_sigma_form = claims.sigma_form(info, a)
    distances = claims.rms_distances(claims.x_t_latents(a, in_sigma_form), claims.x_t_latents(b, in_sigma_form))
    decoded = [claims.mean_difference(x.decoded_x0, y.decoded_x0) for x, y in zip(a.steps, b.steps, strict=True)]
    return claims.parting_sentence(distances, decoded), distances


def test_lesson_3_on_shapes_states_its_runs_own_noise_levels_and_x_t(shapes_env, shapes_server):
    at = open_page("noise_to_image")
    info = client_for(shapes_server.address).model_info()
    run = shapes_run(shapes_server.address, pair="colour", side="a", seed="1", guidance_scale="7")
    assert run.request.scheduler == "euler" and claims.sigma_form(info, run)
    sentences, changes = expected_lesson_3(run, info)
    text = text_of(at)
    for sentence in sentences:
        assert sentence in text, sentence
    # The levels and first sigma are diffusers' own for the shipped scheduler config (Shapes pins "leading":
    # whole levels from t = 981, sigma 13.12 at 50 steps).
    levels = diffusers_timesteps("euler", None, 50, json.loads(SHAPES_SCHEDULER.read_text()))
    assert run.timesteps == pytest.approx(levels)
    assert f"from t = {levels[0]:g} down to t = {levels[-1]:g}" in text
    ((_, tables),) = charts(at)
    (lines,) = [t for t in tables if "series" in t.columns]
    shown = lines[lines["series"] == "the latent x_t"]["value"].tolist()
    assert shown == pytest.approx(changes, rel=1e-4)
    # Divided back, the chart is not sigma shrinking: x's own first change is many times larger.
    assert claims.rms_changes(run.latents())[0] > 10 * changes[0]


def test_lesson_4_on_shapes_measures_what_high_guidance_does(shapes_env, shapes_server):
    at = open_page("guidance")
    shown = {"pair": "colour", "side": "a", "seed": "1"}
    scales = ["0", "7", "20"]
    made = shapes_runs(shapes_server.address, *({**shown, "guidance_scale": g} for g in scales))
    runs = dict(zip(scales, made, strict=True))
    sentence = expected_lesson_4(runs)
    assert sentence in text_of(at)
    # The meaning, on Shapes: g = 20 paints what g = 7 paints (the sentence says "next to nothing"), g = 0 not.
    assert "(next to nothing)" in sentence
    seven, twenty, zero = (judge(runs[g].image) for g in ("7", "20", "0"))
    assert (seven.colour, seven.shape, seven.position) == ("red", "circle", "on the left")
    assert (twenty.colour, twenty.shape, twenty.position) == (seven.colour, seven.shape, seven.position)
    assert (zero.colour, zero.position) != (seven.colour, seven.position)  # the quick check's answer is visible
    assert "oversaturate" not in text_of(at)
    assert "Reported for Stable Diffusion" in text_of(at) and "Saharia et al. 2022" in text_of(at)


def test_lesson_5_on_shapes_says_when_its_two_runs_part(shapes_env, shapes_server):
    at = open_page("change_one_word")
    info = client_for(shapes_server.address).model_info()
    a, b = shapes_runs(
        shapes_server.address, *({"pair": "colour", "side": s, "seed": "1", "guidance_scale": "7"} for s in "ab")
    )
    sentence, distances = expected_lesson_5(a, b, info)
    assert sentence in text_of(at)
    ((_, distance_tables), _) = charts(at)
    (lines,) = [t for t in distance_tables if "series" in t.columns]
    assert lines["value"].tolist() == pytest.approx(distances, rel=1e-4)


def test_lesson_1_and_the_model_page_on_shapes_give_shapes_numbers(shapes_env):
    at = open_page("pipeline")
    (diagram,) = [m.value for m in at.markdown if m.value.startswith("<svg")]  # the pipeline, drawn on the server
    text = "\n".join([m.value for m in at.markdown if m.value != diagram] + [c.value for c in at.caption])
    assert "2 × 77×64 vectors" in diagram and "4×8×8" in diagram
    assert "**two** 77×64 matrices reach the UNet at every step" in text
    assert "Text encoder → UNet: two 77×64 matrices, the prompt's and the empty prompt's" in text
    assert "768" not in text and "77×768" not in diagram
    at = open_page("model")
    text = text_of(at)
    assert model_page_schedule() in text and "the same scheduler" not in text


def test_the_shapes_guidance_zero_quick_check_is_answerable_from_its_pictures(shapes_server):
    """The picture marked right differs from the others in what a student sees; the others look alike."""
    from services.lessons.catalog import load_catalog

    (collection,) = [c for c in load_catalog().collections if c.id == "prompt-pairs" and c.model == "shapes"]
    (question,) = [q for q in collection.questions if q.id == "guidance-zero"]
    pictures = [run.image for run in shapes_runs(shapes_server.address, *(dict(c.labels) for c in question.choices))]
    seen = [(v.colour, v.shape, v.position) for v in map(judge, pictures)]
    right = seen.pop(question.answer)
    assert all(other != right for other in seen), (right, seen)
    assert len(set(seen)) == 1, seen  # the two guided pictures are the same shape, colour and place
    assert all(
        claims.mean_difference(pictures[question.answer], p) > 10
        for p in pictures
        if p is not pictures[question.answer]
    )
    assert "a red circle on the left" in question.question and seen[0] == ("red", "circle", "on the left")
