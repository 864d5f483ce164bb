"""A real inference service with the small lesson catalog, precomputed, for the front end's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.precompute.render import render_catalog
from tests.support.servers import ServerThread, client_for, running_server

ROOT = Path(__file__).resolve().parents[2]
LESSON_CATALOG = ROOT / "tests" / "support" / "lessons.yaml"


@pytest.fixture(scope="session")
def lesson_server(settings) -> Iterator[ServerThread]:
    with running_server(settings.model_copy(update={"catalog": LESSON_CATALOG})) as server:
        client = client_for(server.address)
        summary = render_catalog(client, progress=False)
        assert not summary.failed
        client.close()
        yield server


@pytest.fixture
def frontend_env(lesson_server, monkeypatch) -> str:
    """Point the front end at the lesson server, with its shared caches emptied."""
    from frontend.catalog import examples
    from frontend.client import get_client
    from frontend.trajectory import lesson_store

    monkeypatch.setenv("CLASSROOM_INFERENCE_ADDR", lesson_server.address)
    for cached in (get_client, examples, lesson_store):
        cached.clear()
    yield lesson_server.address
    for cached in (get_client, examples, lesson_store):
        cached.clear()
