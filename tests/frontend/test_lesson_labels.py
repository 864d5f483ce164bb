"""Labels and charts that tell the truth: whole prompts with the differing words marked, display names, marked steps."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
from streamlit.testing.v1 import AppTest

from frontend.drawing.charts import PAIR_COLOURS
from frontend.material.labels import bracketed, differing_words, highlighted
from tests.support.frontend import page_file

SNOWY = "a red fox sitting in a snowy forest, oil painting"
MEADOW = "a red fox sitting in a flower meadow, oil painting"
SCHEDULERS = ["DDIM", "PNDM", "LMS", "Euler", "Euler Ancestral", "DPM-Solver++"]


def page(name: str) -> AppTest:
    return AppTest.from_file(str(page_file(name)), default_timeout=120).run()


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def charts(at: AppTest) -> list[tuple[dict, list[pd.DataFrame]]]:
    """Each Vega-Lite chart on the page: its spec, and its data sets as tables."""
    found = []
    for chart in at.get("vega_lite_chart"):
        tables = [pa.ipc.open_stream(named.data.data).read_pandas() for named in chart.proto.datasets]
        found.append((json.loads(chart.proto.spec), tables))
    return found


def marked_step(tables: list[pd.DataFrame]) -> int:
    """The step the chart's dashed line marks (its one-row table of step and label)."""
    (rule,) = [t for t in tables if set(t.columns) == {"step", "label"}]
    assert list(rule["label"]) == [f"step {rule['step'][0]}"]
    return int(rule["step"][0])


def fields(spec: object) -> list[str]:
    """Every field name a spec's encodings read."""
    if isinstance(spec, dict):
        found = [spec["field"]] if isinstance(spec.get("field"), str) else []
        return found + [name for value in spec.values() for name in fields(value)]
    if isinstance(spec, list):
        return [name for value in spec for name in fields(value)]
    return []


def test_the_differing_words_are_found_and_marked():
    snowy, meadow = differing_words(SNOWY, MEADOW)
    assert bracketed(snowy) == "a red fox sitting in a «snowy forest,» oil painting"
    assert bracketed(meadow) == "a red fox sitting in a «flower meadow,» oil painting"
    red, blue = differing_words("a red circle on the left", "a blue circle on the left")
    assert highlighted(red, "orange") == r"a :orange-background[:orange[**red**]] circle on the left"
    assert highlighted(blue, "violet") == r"a :violet-background[:violet[**blue**]] circle on the left"
    # A word added at the end is marked on its side only.
    short, longer = differing_words("a red circle", "a red circle today")
    assert (bracketed(short), bracketed(longer)) == ("a red circle", "a red circle «today»")


def test_a_typed_prompt_stays_plain_text_when_highlighted():
    mine, _ = differing_words("a [link](http://x.example) **bold**", "a cat")
    shown = highlighted(mine, "orange")
    assert "](http" not in shown and "[link]" not in shown  # escaped: no link, no styles
    assert shown.startswith("a :orange-background[:orange[**")


def test_change_one_word_names_pairs_by_their_prompts_and_marks_the_words(frontend_env):
    at = page("change_one_word")
    assert_clean(at)
    pair = at.selectbox[0]
    assert pair.options == [
        "a red fox sitting in a «snowy forest,» oil painting  →  a red fox sitting in a «flower meadow,» oil painting"
    ]
    shown = [m.value for m in at.markdown]
    assert "a red fox sitting in a :orange-background[:orange[**snowy forest,**]] oil painting" in shown
    assert "a red fox sitting in a :violet-background[:violet[**flower meadow,**]] oil painting" in shown
    assert not any("fox-season" in text for text in shown + pair.options)

    (_, distance), (paths_spec, paths) = charts(at)
    step = marked_step(distance)
    assert 0 <= step <= 4
    # The legend gives both prompts whole, the differing words in « », in two distinct colours.
    legend = paths_spec["layer"][0]["encoding"]["color"]
    assert legend["scale"] == {
        "domain": [
            "a red fox sitting in a «snowy forest,» oil painting",
            "a red fox sitting in a «flower meadow,» oil painting",
        ],
        "range": list(PAIR_COLOURS),
    }
    assert legend["legend"]["labelLimit"] == 0
    assert PAIR_COLOURS[0] != PAIR_COLOURS[1]
    # Both paths' points at the marked step are circled: one per prompt.
    circled = [t for t in paths if len(t) == 2]
    assert len(circled) == 1 and set(circled[0]["step"]) == {step}


def test_noise_to_image_charts_the_guess_from_its_second_step(frontend_env):
    at = page("noise_to_image")
    assert_clean(at)
    ((_, tables),) = charts(at)
    (lines,) = [t for t in tables if "series" in t.columns]
    starts = lines.groupby("series")["step"].min().to_dict()
    assert starts == {"the latent x_t": 1, "the guess x0": 2}  # no invented 0 before the first guess
    assert (lines["value"] > 0).all()
    assert 0 <= marked_step(tables) <= 4


def test_words_charts_read_plain_field_names(frontend_env):
    at = page("words")
    assert_clean(at)
    found = charts(at)
    assert len(found) == 2
    for spec, tables in found:
        for name in fields(spec):
            assert not set(name) & set("'\".[]"), name  # Vega would read these as paths
        assert len(tables[0]) == 77  # one bar or point per position


def test_seeds_and_schedulers_filter_by_display_name_and_compute_a_new_seed(frontend_env):
    at = page("seeds_schedulers")
    assert_clean(at)
    schedulers = next(m for m in at.multiselect if m.label == "Schedulers")
    assert [schedulers.format_func(o) for o in schedulers.options] == SCHEDULERS
    ((_, tables),) = charts(at)
    assert list(tables[0]["scheduler"]) == SCHEDULERS

    schedulers.set_value(["dpm_solver_pp"])
    next(m for m in at.multiselect if m.label == "Steps").set_value(["5"])
    next(n for n in at.number_input if n.label == "Seed").set_value(4)
    at.run()
    assert_clean(at)
    text = "\n".join(m.value for m in at.markdown) + "\n".join(c.value for c in at.caption)
    assert "**DPM-Solver++**" in text and "**DDIM**" not in text
    assert "Seed 4 is not precomputed: the model computes 1 picture now" in text
    pictures = [c for image in at.get("image") for c in image.captions if c.endswith("steps")]
    assert pictures == ["5 steps"]
    assert not charts(at)  # one step count: nothing to compare


def test_a_new_seed_is_the_lessons_work_not_the_students_burst(settings, monkeypatch):
    """One picture fits the student's own limit, yet a new seed's whole grid shows: it is the lesson's work."""
    from tests.frontend.conftest import LESSON_CATALOG, point_the_front_end_at
    from tests.support.servers import running_server

    limited = {"catalog": LESSON_CATALOG, "rate_limit_per_minute": 0.01, "rate_limit_burst": 1}
    with running_server(settings.model_copy(update=limited)) as server:
        for _ in point_the_front_end_at(server.address, monkeypatch):
            at = page("seeds_schedulers")
            next(n for n in at.number_input if n.label == "Seed").set_value(9)
            at.run()
    assert not at.exception
    assert not at.error, [e.value for e in at.error]
    pictures = [c for image in at.get("image") for c in image.captions if c.endswith("steps")]
    assert pictures.count("3 steps") == pictures.count("5 steps") == 6  # all 12, where the limit allowed 1


def test_guidance_puts_the_students_own_prompt_in_the_row_of_scales(frontend_env):
    at = page("guidance")
    next(t for t in at.text_input if t.label == "Prompt").input("a red fox sitting in a desert, oil painting")
    next(s for s in at.slider if s.label == "Guidance scale g").set_value(12.0)
    next(b for b in at.button if b.label == "Generate").click().run()
    assert_clean(at)
    row = ["g = 0", "g = 1", "g = 7", "yours: g = 12, “a red fox sitting in a desert, oil painting”", "g = 20"]
    assert [c for image in at.get("image") for c in image.captions if c.startswith(("g = ", "yours"))] == row
    at.run()  # it stays in its place on the next rerun (another step, another example)
    assert [c for image in at.get("image") for c in image.captions if c.startswith(("g = ", "yours"))] == row
