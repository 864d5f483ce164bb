"""The gRPC server's life: start, health, reflection, TLS, metrics, drain.

What the service does is the Classroom's (`classroom/`); how it speaks gRPC is
the adapters' (`api/`). This file only puts them
on a port, loads the model, and stops them gracefully.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import secrets
import signal
from concurrent.futures import ThreadPoolExecutor

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from services.common.api import SERVICE_NAME, TEACHER_SERVICE_NAME
from services.inference.api.diffusion_service import DiffusionService
from services.inference.api.register import RECEIVE_LIMIT, add_service
from services.inference.api.teacher_service import TeacherService
from services.inference.auth import TokenInterceptor
from services.inference.classroom.classroom import Classroom
from services.inference.diffusion.acceleration import Acceleration, accelerate
from services.inference.diffusion.simulated import load_model
from services.inference.metrics import Metrics
from services.inference.settings import InferenceSettings
from services.inference.trajectories.cache import TrajectoryStore

log = logging.getLogger(__name__)

# The health entry of the trajectory cache (SERVING while Redis answers).
CACHE_HEALTH_NAME = "diffusion_classroom.v1.TrajectoryCache"
# How long a client's connection lasts before it is asked to reconnect (and so to look up the replicas again).
MAX_CONNECTION_AGE_S = 300


def _configure_health_server(server: grpc.aio.Server) -> health.aio.HealthServicer:
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    return servicer


def _status(serving: bool) -> int:
    return health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING


async def _set_serving(health_servicer: health.aio.HealthServicer, serving: bool) -> None:
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, _status(serving))


def freeze_startup_heap() -> None:
    """Put everything alive after start-up (the imports, the model) out of the garbage collector's sight.

    A full collection walks every object the collector tracks. After importing torch,
    diffusers and transformers that is about half a million objects: on a small CPU
    server, a pause of 0.3 to 0.4 s in which no stream moves, now and then during a
    lesson. Frozen, they are never walked again (they live as long as the service);
    later collections walk only what the service made since.
    """
    gc.collect()
    gc.freeze()


class UnsafeSettings(RuntimeError):
    """Settings that would open the class to the network: the service will not start with them."""


class InferenceServer:
    """The server's parts and their lifecycle: start listening, load the model, stop gracefully."""

    def __init__(self, settings: InferenceSettings) -> None:
        if settings.open_to_the_network and not settings.api_token:
            raise UnsafeSettings(
                f"The inference service would listen on {settings.host} with no API token, so anyone on the "
                "network could use it. Set CLASSROOM_API_TOKEN (or CLASSROOM_API_TOKEN_FILE), or listen on "
                "127.0.0.1."
            )
        self.settings = settings
        interceptors = [TokenInterceptor(settings.api_token)] if settings.api_token else []
        self.server = grpc.aio.server(
            interceptors=interceptors,
            # Receiving up to RECEIVE_LIMIT lets an oversized request reach its handler, which says
            # in a sentence that it is too large (gRPC's own refusal is "Received message larger than max").
            options=[
                ("grpc.max_send_message_length", 64 * 2**20),
                ("grpc.max_receive_message_length", RECEIVE_LIMIT),
                ("grpc.so_reuseport", 0),
                # gRPC's DNS resolver asks again only when a connection ends: clients are asked to reconnect
                # (GOAWAY) now and then, so round robin over dns:///inference finds replicas added since.
                # Open streams finish on the old connection; they are never cut for it.
                ("grpc.max_connection_age_ms", MAX_CONNECTION_AGE_S * 1000),
            ],
        )
        self.health = _configure_health_server(self.server)
        self._health_updates: set[asyncio.Task[None]] = set()
        self.metrics = Metrics()
        self.metrics_port = 0
        self._metrics_server: object | None = None
        cache_secret = settings.cache_secret
        if not cache_secret and settings.redis_url:
            log.warning("no CLASSROOM_CACHE_SECRET: cached trajectories will not be served after a restart")
            cache_secret = secrets.token_urlsafe(32)
        self.store = TrajectoryStore(
            settings.redis_url or None,
            settings.cache_ttl_s,
            secret=(cache_secret or "").encode(),
            retry_after_s=settings.cache_retry_s,
            on_availability=self._cache_health,
        )
        # Turns runner events into wire messages (JPEG, PNG, bytes) off the event loop.
        self._encoder = ThreadPoolExecutor(max_workers=2, thread_name_prefix="frame-encoder")
        self.classroom: Classroom | None = None  # once the model is loaded
        self.acceleration: Acceleration | None = None  # what start-up did to the UNet
        self.service = DiffusionService()
        add_service(self.service, self.server)
        self.teacher = TeacherService(settings.teacher_code)
        add_service(self.teacher, self.server, "TeacherService")
        reflection.enable_server_reflection(
            (SERVICE_NAME, TEACHER_SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server
        )
        address = f"{settings.host}:{settings.grpc_port}"
        if settings.tls_cert is not None and settings.tls_key is not None:
            pair = (settings.tls_key.read_bytes(), settings.tls_cert.read_bytes())
            self.port = self.server.add_secure_port(address, grpc.ssl_server_credentials([pair]))
        else:
            self.port = self.server.add_insecure_port(address)

    def _cache_health(self, available: bool, status: str) -> None:
        """The cache's own health entry: the service stays SERVING without it, generating uncached."""
        task = asyncio.get_running_loop().create_task(self.health.set(CACHE_HEALTH_NAME, _status(available)))
        self._health_updates.add(task)
        task.add_done_callback(self._health_updates.discard)

    async def start(self) -> None:
        """Listen at once (health says NOT_SERVING), then load the model and say SERVING."""
        await _set_serving(self.health, False)
        await self.health.set(CACHE_HEALTH_NAME, _status(self.store.available))
        await self.server.start()
        if self.settings.metrics_port:
            self._metrics_server, _ = start_http_server(
                self.settings.metrics_port, addr=self.settings.metrics_host, registry=self.metrics.registry
            )
            self.metrics_port = self._metrics_server.server_port
        log.info("listening on %s:%d; loading %s", self.settings.host, self.port, self.settings.model)
        model = await asyncio.to_thread(load_model, self.settings)
        # Speed options and the batch size that fits the GPU, before SERVING: a compile takes
        # minutes, and belongs to start-up rather than to the first student's picture.
        self.acceleration = await asyncio.to_thread(accelerate, model, self.settings)
        settings = self.settings.model_copy(update={"max_batch_size": self.acceleration.max_batch_size})
        self.classroom = Classroom(settings, model, self.store, self.metrics, self._encoder)
        self.service.attach(self.classroom)
        self.teacher.attach(self.classroom)
        freeze_startup_heap()
        self.metrics.gc_pauses.start()
        await _set_serving(self.health, True)
        log.info("serving %s on %s", model.model_id, model.device)

    async def stop(self, grace: float | None = None) -> None:
        """Refuse new calls, let open streams finish within the grace period, then stop."""
        self.metrics.gc_pauses.stop()
        self.service.stop_taking_work()  # before the health says so: whoever reads it finds new pictures refused
        await _set_serving(self.health, False)
        if self.classroom is not None:
            await self.classroom.cancel_precompute()
            self.classroom.stop_watching()  # streams that would never end by themselves
        await self.server.stop(self.settings.shutdown_grace_s if grace is None else grace)
        if self.classroom is not None:
            await self.classroom.close()
        await self.store.close()
        self._encoder.shutdown(wait=False, cancel_futures=True)
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()


async def serve(settings: InferenceSettings) -> None:
    """Run the inference service until SIGTERM or SIGINT, then drain and exit."""
    server = InferenceServer(settings)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    start = asyncio.create_task(server.start())
    stop = asyncio.create_task(stopping.wait())
    await asyncio.wait({start, stop}, return_when=asyncio.FIRST_COMPLETED)
    if start.done() and start.exception() is None:
        await stop  # serving: wait for the signal
    elif not start.done():
        start.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await start
    log.info("shutting down: draining open streams (up to %.0f s)", settings.shutdown_grace_s)
    await server.stop()
    log.info("stopped")
    if start.done() and not start.cancelled() and start.exception() is not None:
        raise RuntimeError("the model could not be loaded") from start.exception()
