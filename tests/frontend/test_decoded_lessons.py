"""Lessons 3 and 5 show each step's decoded guess beside the previews when their examples carry it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.frontend.conftest import catalog_server, point_the_front_end_at
from tests.support.frontend import page_file
from tests.support.servers import ServerThread

# The prompt pairs as a catalog renders them with the decoded guesses (as the Shapes catalog does).
CATALOG = """
version: 1
collections:
  - id: prompt-pairs
    lesson: change-one-word
    title: Change one word
    request: {scheduler: euler, num_inference_steps: 4, width: 64, height: 64, include: [decoded_x0_preview]}
    pairs:
      barn:
        - a red barn in a field
        - a blue barn in a field
    seeds: [1]
    guidance_scales: [7]
"""


@pytest.fixture(scope="module")
def decoded_server(settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    catalog: Path = tmp_path_factory.mktemp("catalog") / "lessons.yaml"
    catalog.write_text(CATALOG)
    with catalog_server(settings, catalog, entries=2) as server:
        yield server


@pytest.fixture
def decoded_env(decoded_server, monkeypatch) -> Iterator[str]:
    yield from point_the_front_end_at(decoded_server.address, monkeypatch)


def player_args(at: AppTest, name: str) -> dict:
    player = next(e for e in at.get("component_instance") if (e.key or "").startswith(f"{name}-"))
    return json.loads(player.proto.json_args)


def run(name: str) -> AppTest:
    at = AppTest.from_file(str(page_file(name)), default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def test_lesson_3_plays_the_decoded_guess_beside_the_previews(decoded_env, decoded_server):
    at = run("noise_to_image")
    args = player_args(at, "noise-player")
    assert args["panels"][-1] == "the model's guess, decoded by its VAE"
    assert all(picture is not None for picture in args["frames"][-1]["pictures"])
    assert any("decoded into pixels" in c.value for c in at.caption)
    # Opened from the cache: the lesson's own trajectory, with its decoded guesses, was found.
    assert decoded_server.call(lambda: decoded_server.classroom.hub.stats.cache_hits) >= 1


def test_lesson_5_plays_both_decoded_guesses(decoded_env):
    at = run("change_one_word")
    args = player_args(at, "change-player")
    assert len(args["panels"]) == 4 and args["panels"][2].startswith("the guess decoded")
    assert all(picture is not None for picture in args["frames"][-1]["pictures"])
