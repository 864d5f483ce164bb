"""A real inference service with the small lesson catalog, precomputed, for the front end's tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.inference.settings import InferenceSettings
from services.precompute.render import render_catalog
from tests.support.servers import ServerThread, client_for, running_server

ROOT = Path(__file__).resolve().parents[2]
LESSON_CATALOG = ROOT / "tests" / "support" / "lessons.yaml"


@contextlib.contextmanager
def catalog_server(settings: InferenceSettings, catalog: Path, entries: int | None = None) -> Iterator[ServerThread]:
    """A service serving `catalog`, every entry rendered into the cache (`entries`: how many there must be)."""
    with running_server(settings.model_copy(update={"catalog": catalog})) as server:
        client = client_for(server.address)
        summary = render_catalog(client, progress=False)
        assert not summary.failed
        if entries is not None:
            assert summary.rendered + summary.skipped == entries
        client.close()
        yield server


def point_the_front_end_at(address: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Point the front end at `address`, with its shared caches emptied before and after (a generator of one)."""
    from frontend.client import _client_at, get_client
    from frontend.material.examples import examples
    from frontend.stream.store import lesson_store

    monkeypatch.setenv("CLASSROOM_INFERENCE_ADDR", address)
    monkeypatch.delenv("CLASSROOM_SHAPES_ADDR", raising=False)
    for cached in (get_client, _client_at, examples, lesson_store):
        cached.clear()
    try:
        yield address
    finally:
        for cached in (get_client, _client_at, examples, lesson_store):
            cached.clear()


@pytest.fixture(scope="session")
def lesson_server(settings) -> Iterator[ServerThread]:
    with catalog_server(settings, LESSON_CATALOG) as server:
        yield server


@pytest.fixture
def frontend_env(lesson_server, monkeypatch) -> Iterator[str]:
    """Point the front end at the lesson server, with its shared caches emptied."""
    yield from point_the_front_end_at(lesson_server.address, monkeypatch)
