"""Lesson 2 and the Playground on the Shapes model (AppTest, a real service): its words, its sizes, its pictures.

What a student sees is checked against the model itself: the words Shapes learned are those of its
captions, the similarity caption of lesson 2 names what the chart's own data shows (computed again
here), and the Playground offers only what Shapes can paint and keeps a picture through a refusal.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from frontend.material.labels import EXAMPLE_PROMPTS, SHAPES_FAMILY
from services.common.codecs import tensor_from_proto
from services.lessons.catalog import DEFAULT_CATALOG
from services.shapes import data
from tests.frontend.conftest import point_the_front_end_at
from tests.support.frontend import page_file
from tests.support.servers import client_for, running_server


@pytest.fixture(scope="module")
def shapes_server(settings):
    """Shapes with the rate limit on: one picture, then the next one is refused for a while."""
    config = settings.model_copy(
        update={"model": "shapes", "catalog": DEFAULT_CATALOG, "rate_limit_per_minute": 0.5, "rate_limit_burst": 1}
    )
    with running_server(config) as server:
        yield server


@pytest.fixture
def shapes_env(shapes_server, monkeypatch) -> Iterator[str]:
    yield from point_the_front_end_at(shapes_server.address, monkeypatch)


def page(name: str) -> AppTest:
    return AppTest.from_file(str(page_file(name)), default_timeout=120).run()


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_shapes_examples_are_made_of_its_caption_words():
    for prompt in EXAMPLE_PROMPTS[SHAPES_FAMILY]:
        assert set(prompt.split()) <= set(data.vocabulary()), prompt
        assert not any(f"{c} {s}" in prompt for c, s in data.HELD_OUT_PAIRS), prompt


def test_lesson_2_on_shapes_starts_from_its_words_and_strikes_out_dog(shapes_env):
    at = page("words")
    assert_clean(at)
    assert [t.value for t in at.text_input] == ["a red circle on the left", "a blue circle on the left"]
    assert any("learned every word of this prompt" in s.value for s in at.success)
    assert not at.warning

    at.text_input[0].input("a red dog on the left").run()
    assert_clean(at)
    warnings = [w.value for w in at.warning]
    assert len(warnings) == 1 and "Shapes never learned “dog”: no training caption had it" in warnings[0]
    chips = next(m.value for m in at.markdown if "title=" in m.value)
    struck = [part for part in chips.split("<span")[1:] if "line-through" in part]
    assert len(struck) == 1 and ">dog</span>" in struck[0]
    table = at.dataframe[0].value
    assert table.loc[table.piece == "dog</w>", "learned"].tolist() == ["no"]
    assert table.loc[table.piece == "red</w>", "learned"].tolist() == ["yes"]


def similarity_of(a: str, b: str, address: str) -> tuple[np.ndarray, list[int], list[int]]:
    """The chart's measure, computed here: cosine similarity per position of the two prompts' vectors."""
    client = client_for(address)
    try:
        first, second = client.encode(a), client.encode(b)
    finally:
        client.close()
    x = tensor_from_proto(first.embeddings).astype(np.float32)
    y = tensor_from_proto(second.embeddings).astype(np.float32)
    cosine = (x * y).sum(axis=1) / np.maximum(np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1), 1e-6)
    return cosine, [t.id for t in first.tokens.tokens], [t.id for t in second.tokens.tokens]


@pytest.mark.parametrize(
    ("other", "first_different"), [("a blue circle on the left", 2), ("a red circle on the right", 6)]
)
def test_lesson_2_caption_says_what_its_chart_shows(shapes_env, other, first_different):
    at = page("words")
    at.text_input[1].input(other).run()
    assert_clean(at)
    similarity, ids, other_ids = similarity_of("a red circle on the left", other, shapes_env)
    first = next(i for i, (a, b) in enumerate(zip(ids, other_ids, strict=True)) if a != b)
    assert first == first_different
    # Causal attention: before the first different piece the vectors are the same; from it on they differ.
    assert similarity[:first].min() >= 0.9995
    after = similarity[first:]
    caption = next(c.value for c in at.caption if c.value.startswith("Position 0 (start token)"))
    assert f"Positions 0 to {first - 1} hold the same pieces in both prompts, and their vectors are the same" in caption
    assert f"From position {first} on (the first different piece" in caption
    differ = int((after < 0.9995).sum())
    which = "every vector differs" if differ == len(after) else f"{differ} of {len(after)} vectors differ"
    assert which in caption
    assert f"similarity from {after.min():.3f} to {after.max():.3f}" in caption
    lowest, end = first + int(after.argmin()), ids.index(ids[-1])  # the end token, then its copies (padding)
    assert f"lowest at position {lowest}." in caption
    assert (f"Position {lowest} is padding (the end token repeated)" in caption) == (lowest > end)


def test_playground_on_shapes_offers_only_what_it_can_paint(shapes_env):
    at = page("playground")
    assert_clean(at)
    assert at.text_area[0].value == EXAMPLE_PROMPTS[SHAPES_FAMILY][0]
    sizes = {box.label: box.options for box in at.selectbox if box.label in ("Width", "Height")}
    assert sizes == {"Width": ["64", "128"], "Height": ["64", "128"]}
    steps = next(s for s in at.slider if s.label == "Steps")
    assert steps.max == 100
    assert any("Not offered: pictures larger than 128 × 128 pixels" in c.value for c in at.caption)
    assert any("learned to paint 64 × 64 pictures" in c.value for c in at.caption)
    assert not at.warning  # its own example prompt: every word known


def test_playground_warns_about_words_shapes_never_learned_before_generate(shapes_env):
    at = page("playground")
    at.text_area[0].input("a dog on the left").run()
    assert_clean(at)
    assert [w.value for w in at.warning] == [
        "Shapes never learned “dog”: no training caption had it, so it means nothing to it."
    ]
    at.text_area[0].input("a dog riding a zebrafish").run()
    assert [w.value for w in at.warning] == [
        "Shapes never learned “dog”, “riding”, “zebrafish”: no training caption had them, so they mean nothing to it."
    ]
    assert not at.subheader  # nothing was generated
    example = next(box for box in at.selectbox if box.label.startswith("Or start from an example"))
    example.set_value(EXAMPLE_PROMPTS[SHAPES_FAMILY][1]).run()
    assert at.text_area[0].value == EXAMPLE_PROMPTS[SHAPES_FAMILY][1]
    assert not at.warning
    assert [s.value for s in at.success] == ["Shapes learned every word of this prompt."]


def test_a_refused_picture_keeps_the_last_one_on_screen(shapes_env):
    at = page("playground")
    next(s for s in at.slider if s.label == "Steps").set_value(4)
    at.number_input[0].set_value(3)
    next(b for b in at.button if b.label == "Generate").click().run()
    assert_clean(at)
    heading = "“a red circle on the left”, seed 3"
    assert [s.value for s in at.subheader] == [heading]

    at.text_area[0].input("a blue square on the right").run()
    next(b for b in at.button if b.label == "Generate").click().run()
    assert not at.exception
    refusals = [e.value for e in at.error]
    assert len(refusals) == 1 and "faster than the class allows" in refusals[0]
    assert [s.value for s in at.subheader] == [heading]  # the last finished picture stays, under the refusal
    assert at.get("download_button")
