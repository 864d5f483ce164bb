"""Lesson 7 (which word paints where) through Streamlit's AppTest, against a real service (tiny model)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from services.common.api import pb
from services.common.codecs import tensor_from_proto
from tests.frontend.conftest import catalog_server, point_the_front_end_at
from tests.integration.helpers import collect
from tests.support.frontend import page_file
from tests.support.servers import ServerThread, stub_for

CATALOG = """
version: 1
collections:
  - id: attention-maps
    lesson: which-word-paints-where
    title: Which word paints where
    request: {num_inference_steps: 4, width: 64, height: 64, include: [cross_attention]}
    prompts:
      barn: a red barn in a green field
      boat: a small boat on a lake
    seeds: [1]
"""


@pytest.fixture(scope="module")
def attention_server(settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    catalog: Path = tmp_path_factory.mktemp("catalog") / "lessons.yaml"
    catalog.write_text(CATALOG)
    with catalog_server(settings, catalog, entries=2) as server:
        yield server


@pytest.fixture
def attention_env(attention_server, monkeypatch) -> Iterator[str]:
    yield from point_the_front_end_at(attention_server.address, monkeypatch)


def run_maps(address: str, prompt: str) -> tuple[np.ndarray, int]:
    """The example's maps [steps, kept tokens, h, w] and its padding count, from a stream of the same request."""
    from frontend.material.examples import examples

    example = next(e for e in examples("attention-maps") if e.request.prompt == prompt)
    channel, stub = stub_for(address)
    try:
        stream = collect(stub.Generate(example.request))
    finally:
        channel.close()
    tokens = stream.header.prompt.tokens.tokens
    padding = sum(t.kind == pb.TOKEN_KIND_PADDING for t in tokens)
    return np.stack([tensor_from_proto(f.cross_attention.maps).astype(np.float64) for f in stream.frames]), padding


def percent(share: float) -> str:
    return "under 1%" if 0 < share < 0.005 else f"{share:.0%}"


def lesson() -> AppTest:
    return AppTest.from_file(str(page_file("attention")), default_timeout=300).run()


def captions(at: AppTest) -> list[str]:
    return [caption for image in at.get("image") for caption in image.captions]


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_an_example_shows_each_pieces_map_and_the_end_tokens(attention_env):
    at = lesson()
    assert_clean(at)
    chips = at.pills[0]
    assert list(chips.options) == ["a", "red", "barn", "in", "a", "green", "field"]
    assert chips.value == 7  # the last piece, "field", to start with
    assert "«field», summed over all 4 steps" in captions(at)
    assert "‹end›, the token closing the prompt, summed" in captions(at)
    assert any(e.key.startswith("attention-player-") for e in at.get("component_instance"))
    assert len(at.get("arrow_vega_lite_chart")) + len(at.get("vega_lite_chart")) >= 1  # who gets the attention
    text = "\n".join(m.value for m in at.markdown)
    assert "which of you matters here?" in text and "start token" in text
    # The shares are this run's (measured again here from the same request), not Stable Diffusion's.
    maps, padding = run_maps(attention_env, "a red barn in a green field")
    mean = maps.mean(axis=(0, 2, 3))
    assert (
        f"the start token gets {percent(mean[0])} of the attention, the prompt's 7 pieces "
        f"{percent(mean[1:-1].sum())} together, the end token {percent(mean[-1])}, and the {padding} padding "
        f"positions after it {percent(1 - mean.sum())}"
    ) in text
    assert "Stable Diffusion only (reported, not measured here)" in "\n".join(c.value for c in at.caption)
    assert "as DAAM does" not in text

    chips.set_value(3).run()  # "barn"
    assert_clean(at)
    assert "«barn», summed over all 4 steps" in captions(at)
    assert any("grid" in caption for caption in captions(at))  # the per-resolution breakdown


def test_a_students_own_prompt_gets_its_own_pieces(attention_env):
    at = lesson()
    at.radio[0].set_value("Your own prompt").run()
    assert_clean(at)
    at.text_input[0].input("a blue kite")
    at.number_input[0].set_value(5)
    at.button[0].click().run()
    assert_clean(at)
    chips = at.pills[0]
    assert list(chips.options) == ["a", "blue", "kite"]
    assert "«kite», summed over all 20 steps" in captions(at)
