"""The Shapes model's server, started once for every integration test that needs the real trained model."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.common.api import pb_grpc
from services.inference.settings import InferenceSettings
from services.lessons.catalog import DEFAULT_CATALOG
from tests.support.servers import running_server, stub_for


@pytest.fixture(scope="session")
def shapes_stub(settings: InferenceSettings) -> Iterator[pb_grpc.DiffusionServiceStub]:
    """A real gRPC server on the shipped Shapes model and its own catalog, with the suite's Redis."""
    config = settings.model_copy(update={"model": "shapes", "catalog": DEFAULT_CATALOG})
    with running_server(config) as server:
        channel, stub = stub_for(server.address)
        yield stub
        channel.close()
