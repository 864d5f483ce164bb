"""The service says SERVING only once its UNet is ready: a compile at start-up keeps it NOT_SERVING."""

import threading

from grpc_health.v1 import health_pb2

from services.common.api import SERVICE_NAME
from services.inference import server as server_module
from services.inference.settings import InferenceSettings
from tests.support.servers import health_status, running_server, stub_for

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def test_health_waits_for_the_warm_up(tiny_dir, monkeypatch):
    warming, warmed = threading.Event(), threading.Event()
    real_accelerate = server_module.accelerate

    def slow_warm_up(model, settings):
        """A compile that lasts until the test lets it end."""
        warming.set()
        assert warmed.wait(60), "the test never ended the warm-up"
        return real_accelerate(model, settings)

    monkeypatch.setattr(server_module, "accelerate", slow_warm_up)
    settings = InferenceSettings(
        model="tiny", tiny_dir=tiny_dir, host="127.0.0.1", grpc_port=0, metrics_port=0, redis_url=""
    )
    with running_server(settings, wait_for_model=False) as server:
        channel, _ = stub_for(server.address)
        assert warming.wait(60), "the model never loaded"
        # The model is loaded and the UNet is being prepared: not yet.
        assert health_status(channel) == NOT_SERVING
        assert health_status(channel, "") == NOT_SERVING
        assert server.server.classroom is None
        warmed.set()
        server.start_future.result(60)
        assert health_status(channel) == SERVING and health_status(channel, SERVICE_NAME) == SERVING
        assert health_status(channel, "") == SERVING
        assert server.server.acceleration is not None and server.server.acceleration.compile_mode == "off"  # a CPU
        channel.close()
