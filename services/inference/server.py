"""The gRPC server: the DiffusionService, health, reflection and graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
import signal
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status
from prometheus_client import start_http_server

from services.common.api import (
    CLASS_METADATA,
    LESSON_METADATA,
    NAME_METADATA,
    SERVICE_NAME,
    STUDENT_METADATA,
    TEACHER_SERVICE_NAME,
    pb,
    pb_grpc,
)
from services.common.trajectories import canonical_request
from services.inference import frames
from services.inference.auth import TokenInterceptor
from services.inference.batching import QueueFull, Requester, Runner, StudentBusy
from services.inference.cache import TrajectoryStore
from services.inference.crowd import CrowdHold
from services.inference.metrics import Metrics
from services.inference.models import DiffusionModel
from services.inference.moderation import Blocklist
from services.inference.probes import DEFAULT_PROBES, PROBES
from services.inference.ratelimit import RateLimited, RateLimiter
from services.inference.runner import EncodedPrompt
from services.inference.schedulers import SCHEDULERS
from services.inference.settings import InferenceSettings
from services.inference.teacher import TeacherService
from services.inference.trajectories import TrajectoryFailed, TrajectoryHub
from services.inference.validation import (
    MAX_SEED,
    SIZE_MULTIPLE,
    BlockedPrompt,
    GenerationSpec,
    RequestError,
    check_generate,
    check_prompt,
)
from services.lessons.catalog import Entry, all_entries, load_catalog

log = logging.getLogger(__name__)

LOADING_MESSAGE = "The model is still loading. Please try again in a minute."
STUDENT_BUSY_MESSAGE = "You already have a picture being made. Wait for it to finish (or stop it), then try again."
# The health entry of the trajectory cache (SERVING while Redis answers).
CACHE_HEALTH_NAME = "diffusion_classroom.v1.TrajectoryCache"


async def _abort_retry_later(context: grpc.aio.ServicerContext, message: str, retry_after_s: float) -> None:
    """RESOURCE_EXHAUSTED with when to try again, in words and as a RetryInfo detail."""
    retry = error_details_pb2.RetryInfo()
    retry.retry_delay.FromSeconds(max(1, math.ceil(retry_after_s)))
    detail = any_pb2.Any()
    detail.Pack(retry)
    status = status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message=message, details=[detail])
    await context.abort_with_status(rpc_status.to_status(status))


async def _abort_invalid(context: grpc.aio.ServicerContext, error: RequestError) -> None:
    """INVALID_ARGUMENT with the student's sentence and a BadRequest detail per field."""
    bad_request = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=name, description=sentence)
            for name, sentence in error.violations
        ]
    )
    detail = any_pb2.Any()
    detail.Pack(bad_request)
    status = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=str(error), details=[detail])
    await context.abort_with_status(rpc_status.to_status(status))


@dataclass(frozen=True)
class _CatalogEntry:
    entry: Entry
    spec: GenerationSpec
    request: pb.GenerateRequest  # canonical, defaults filled in
    key: str


@dataclass(frozen=True)
class Blocked:
    """A prompt the blocklist refused: who, when, and what (shown to the teacher only on request)."""

    student_name: str
    unix_time: float
    prompt: str


def _text_metadata(context: grpc.aio.ServicerContext, key: str) -> str:
    """A UTF-8 (-bin) metadata value the front end sent, such as the student's name, or ""."""
    for name, value in context.invocation_metadata() or ():
        if name == key:
            return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    return ""


class DiffusionService(pb_grpc.DiffusionServiceServicer):
    """Serves one loaded model; answers UNAVAILABLE until `attach` gives it the model."""

    def __init__(
        self, settings: InferenceSettings, on_cache_availability: Callable[[bool, str], None], metrics: Metrics
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.model: DiffusionModel | None = None
        self.runner: Runner | None = None
        self.hub: TrajectoryHub | None = None
        self.store = TrajectoryStore(
            settings.redis_url or None,
            settings.cache_ttl_s,
            retry_after_s=settings.cache_retry_s,
            on_availability=on_cache_availability,
        )
        self.catalog = load_catalog(settings.catalog)
        self.blocklist = Blocklist.from_file(settings.blocklist)
        self.limiter = RateLimiter(
            settings.redis_url or None, settings.rate_limit_per_minute, settings.rate_limit_burst
        )
        self.blocked_prompts = 0
        # Replays hold their bulk while 16 Generate calls arrive within 0.1 s (at most 0.25 s a message).
        self.crowd = CrowdHold(size=16, window_s=0.1, wait_s=0.25)
        self.blocked: deque[Blocked] = deque(maxlen=50)  # the latest blocked attempts, newest first
        self.catalog_entries: list[_CatalogEntry] = []
        self._catalog_keys: dict[str, str] = {}
        # Turns runner events into wire messages (JPEG, PNG, bytes) off the event loop.
        self._encoder = ThreadPoolExecutor(max_workers=2, thread_name_prefix="frame-encoder")

    def attach(self, model: DiffusionModel) -> None:
        self.model = model
        batch = self.settings.max_batch_size or (8 if model.device.type == "cuda" else 4)
        self.runner = Runner(
            model,
            max_batch_size=batch,
            max_queue=self.settings.max_queue,
            metrics=self.metrics,
            max_queue_per_class=self.settings.max_queue_per_class,
        )
        self.hub = TrajectoryHub(
            model,
            self.runner,
            self.store,
            self._encoder,
            memory_bytes=self.settings.memory_cache_mb * 2**20,
            metrics=self.metrics,
            limiter=self.limiter,
            single_flight=self.settings.single_flight,
        )
        self.catalog_entries = []
        for entry in all_entries(self.catalog):
            try:
                spec = check_generate(entry.request, self.settings, model.default_size)
            except RequestError as error:
                log.warning("lesson entry %s is outside this server's limits and is left out: %s", entry.id, error)
                continue
            request = canonical_request(spec.to_proto())
            self.catalog_entries.append(_CatalogEntry(entry, spec, request, self.hub.key(spec)))
        self._catalog_keys = {e.entry.id: e.key for e in self.catalog_entries}

    async def close(self) -> None:
        self.crowd.close()
        if self.hub is not None:
            await self.hub.close()
        if self.runner is not None:
            self.runner.close(timeout=5)
        await self.store.close()
        await self.limiter.close()
        self._encoder.shutdown(wait=False, cancel_futures=True)

    async def ready(self, context: grpc.aio.ServicerContext) -> DiffusionModel:
        if self.model is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, LOADING_MESSAGE)
        assert self.model is not None
        return self.model

    async def GetModelInfo(
        self, request: pb.GetModelInfoRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetModelInfoResponse:
        model = await self.ready(context)
        s = self.settings
        factor = model.vae_downsample_factor
        return pb.GetModelInfoResponse(
            model_id=model.model_id,
            model_revision=model.revision,
            device=str(model.device),
            dtype=str(model.dtype).removeprefix("torch."),
            default_width=model.default_size,
            default_height=model.default_size,
            default_steps=s.default_steps,
            default_guidance_scale=s.default_guidance_scale,
            default_scheduler=s.default_scheduler,
            latent_channels=model.latent_channels,
            vae_downsample_factor=factor,
            latent_shape_rule=f"[{model.latent_channels}, height / {factor}, width / {factor}]",
            vae_scaling_factor=float(model.vae.config.scaling_factor),
            schedulers=[
                pb.SchedulerInfo(
                    name=spec.name,
                    display_name=spec.display_name,
                    description=spec.description,
                    ancestral=spec.ancestral,
                    sigma_space=spec.sigma_space,
                )
                for spec in SCHEDULERS.values()
            ],
            limits=pb.Limits(
                min_steps=s.min_steps,
                max_steps=s.max_steps,
                min_guidance_scale=0.0,
                max_guidance_scale=s.max_guidance_scale,
                min_size=s.min_size,
                max_size=s.max_size,
                size_multiple=SIZE_MULTIPLE,
                max_prompt_chars=s.max_prompt_chars,
                max_seed=MAX_SEED,
            ),
            text_max_length=model.max_length,
            text_hidden_size=int(model.text_encoder.config.hidden_size),
            text_encoder_layers=int(model.text_encoder.config.num_hidden_layers),
            tokenizer_vocab_size=len(model.tokenizer),
            prediction_type=str(model.scheduler_config.get("prediction_type", "epsilon")),
            num_train_timesteps=int(model.scheduler_config.get("num_train_timesteps", 1000)),
            include_paths=list(PROBES),
            default_include_paths=[name for name in PROBES if name in DEFAULT_PROBES],
        )

    async def Tokenize(self, request: pb.TokenizeRequest, context: grpc.aio.ServicerContext) -> pb.TokenizeResponse:
        model = await self.ready(context)
        try:
            check_prompt(request.prompt, self.settings, required=False)
        except RequestError as error:
            await _abort_invalid(context, error)
        tokens = await asyncio.to_thread(model.tokenize, request.prompt)
        return frames.tokens_message(tokens)

    async def EncodePrompt(
        self, request: pb.EncodePromptRequest, context: grpc.aio.ServicerContext
    ) -> pb.EncodePromptResponse:
        model = await self.ready(context)
        try:
            check_prompt(request.prompt, self.settings, required=False)
        except RequestError as error:
            await _abort_invalid(context, error)

        def encode() -> pb.PromptEncoding:
            encoding = model.encode(request.prompt)
            return frames.prompt_message(EncodedPrompt.from_embedding(request.prompt, encoding, True))

        return pb.EncodePromptResponse(encoding=await asyncio.to_thread(encode))

    async def Generate(self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        model = await self.ready(context)
        self.crowd.arrived()
        try:
            spec = check_generate(request, self.settings, model.default_size, self.blocklist)
        except BlockedPrompt as blocked:
            self.blocked_prompts += 1
            self.metrics.rejected.labels("blocked").inc()
            log.info("blocked a prompt")  # the prompt itself stays out of the logs
            # Kept in memory only, for the teacher's page (which shows the prompt only when opened).
            self.blocked.appendleft(Blocked(_text_metadata(context, NAME_METADATA), time.time(), request.prompt))
            await _abort_invalid(context, blocked)
        except RequestError as error:
            await _abort_invalid(context, error)
        assert self.hub is not None
        metadata = dict(context.invocation_metadata() or ())
        student = str(metadata.get(STUDENT_METADATA) or context.peer())  # no id: the connection stands in
        # A lesson tag counts only on the catalog entry's own request.
        lesson = str(metadata.get(LESSON_METADATA, ""))
        if lesson and self._catalog_keys.get(lesson) != self.hub.key(spec):
            lesson = ""
        try:
            requester = Requester(
                student, _text_metadata(context, NAME_METADATA), _text_metadata(context, CLASS_METADATA)
            )
            trajectory, source = await self.hub.open(spec, requester, lesson_entry=lesson)
        except StudentBusy:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, STUDENT_BUSY_MESSAGE)
        except QueueFull as full:
            minutes = max(1, round(full.retry_after_s / 60))
            message = (
                f"Your class already has {full.waiting} pictures waiting, as many as one class may. "
                if full.classroom is not None
                else f"The class queue is full right now ({full.waiting} pictures are waiting). "
            ) + f"Please try again in about {minutes} minute(s)."
            await _abort_retry_later(context, message, full.retry_after_s)
        except RateLimited as limited:
            self.metrics.rejected.labels("rate_limited").inc()
            message = (
                "You are making pictures faster than the class allows. "
                f"Please try again in {max(1, math.ceil(limited.retry_after_s))} seconds."
            )
            await _abort_retry_later(context, message, limited.retry_after_s)
        try:
            status = pb.StreamStatus(
                source=source, cache_hit=source == pb.TRAJECTORY_SOURCE_CACHE, trajectory_key=trajectory.key
            )
            first = True
            async for message, frame_count in trajectory.follow(spec.include, pb.GenerateResponse(status=status)):
                if not first and source != pb.TRAJECTORY_SOURCE_COMPUTED:
                    await self.crowd.hold()
                yield message  # already serialized (see add_service)
                self.metrics.frames_sent.inc(frame_count)
                first = False
        except TrajectoryFailed as failure:
            await context.abort(grpc.StatusCode.ABORTED if failure.aborted else grpc.StatusCode.INTERNAL, str(failure))
        finally:
            # The client went away, or the stream ended: the last reader's leaving stops the work.
            self.hub.release(trajectory)

    async def ListLessons(
        self, request: pb.ListLessonsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListLessonsResponse:
        await self.ready(context)
        chosen = [e for e in self.catalog_entries if request.collection in ("", e.entry.collection)]
        states = await self.store.states([e.key for e in chosen])
        return pb.ListLessonsResponse(
            catalog_version=self.catalog.version,
            collections=[
                pb.LessonCollection(id=c.id, lesson=c.lesson, title=c.title, description=c.description)
                for c in self.catalog.collections
                if request.collection in ("", c.id)
            ],
            entries=[
                pb.LessonEntry(
                    id=e.entry.id,
                    collection=e.entry.collection,
                    request=e.request,
                    cache_state=state,
                    trajectory_key=e.key,
                    labels=e.entry.labels,
                )
                for e, state in zip(chosen, states, strict=True)
            ],
            cache_available=self.store.available,
        )

    async def GetServerStats(
        self, request: pb.GetServerStatsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetServerStatsResponse:
        await self.ready(context)
        assert self.runner is not None and self.hub is not None
        return pb.GetServerStatsResponse(
            **vars(self.runner.stats()),
            **vars(self.hub.stats),
            cache_writes=self.store.stats.writes,
            cache_errors=self.store.stats.errors,
            cache_entries_dropped=self.store.stats.dropped,
            cache_available=self.store.available,
            cache_status=self.store.status,
            blocked_prompts=self.blocked_prompts,
        )


def _serialize(message: Message | bytes) -> bytes:
    return message if isinstance(message, bytes) else message.SerializeToString()


def add_service(servicer: DiffusionService, server: grpc.aio.Server) -> None:
    """Register the DiffusionService as the generated helper would, but let handlers send bytes.

    Generate's messages are serialized once per trajectory and include mask, not once
    per reader: a class replaying the same cached lesson costs copying, not encoding.
    """
    handlers = {}
    for method in pb.DESCRIPTOR.services_by_name["DiffusionService"].methods:
        make = grpc.unary_stream_rpc_method_handler if method.server_streaming else grpc.unary_unary_rpc_method_handler
        handlers[method.name] = make(
            getattr(servicer, method.name),
            request_deserializer=getattr(pb, method.input_type.name).FromString,
            response_serializer=_serialize,
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))


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


class InferenceServer:
    """The server's parts and their lifecycle: start listening, load the model, stop gracefully."""

    def __init__(self, settings: InferenceSettings) -> None:
        self.settings = settings
        interceptors = [TokenInterceptor(settings.api_token)] if settings.api_token else []
        self.server = grpc.aio.server(
            interceptors=interceptors,
            options=[("grpc.max_send_message_length", 64 * 2**20), ("grpc.so_reuseport", 0)],
        )
        self.health = _configure_health_server(self.server)
        self._health_updates: set[asyncio.Task[None]] = set()
        self.metrics = Metrics()
        self.metrics_port = 0
        self._metrics_server: object | None = None
        self.service = DiffusionService(settings, on_cache_availability=self._cache_health, metrics=self.metrics)
        add_service(self.service, self.server)
        self.teacher = TeacherService(self.service, settings.teacher_code)
        pb_grpc.add_TeacherServiceServicer_to_server(self.teacher, self.server)
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
        await self.health.set(CACHE_HEALTH_NAME, _status(self.service.store.available))
        await self.server.start()
        if self.settings.metrics_port:
            self._metrics_server, _ = start_http_server(
                self.settings.metrics_port, addr=self.settings.host, registry=self.metrics.registry
            )
            self.metrics_port = self._metrics_server.server_port
        log.info("listening on %s:%d; loading %s", self.settings.host, self.port, self.settings.model)
        model = await asyncio.to_thread(DiffusionModel.load, self.settings)
        self.service.attach(model)
        freeze_startup_heap()
        self.metrics.gc_pauses.start()
        await _set_serving(self.health, True)
        log.info("serving %s on %s", model.model_id, model.device)

    async def stop(self, grace: float | None = None) -> None:
        """Refuse new calls, let open streams finish within the grace period, then stop."""
        self.metrics.gc_pauses.stop()
        await _set_serving(self.health, False)
        await self.teacher.close()
        await self.server.stop(self.settings.shutdown_grace_s if grace is None else grace)
        await self.service.close()
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
