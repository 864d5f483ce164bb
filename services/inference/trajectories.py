"""Trajectories: each generation an append-only log that any number of readers follow.

The request that starts a generation, identical requests that arrive while it
runs (single flight), and later requests served from the cache all read the
same log, each at its own pace. Appending never waits for a reader, so a slow
reader never holds up the model.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor

from services.common.api import pb, store_pb
from services.common.trajectories import Namespace, canonical_request, trajectory_id
from services.inference import frames
from services.inference.batching import Job, QueueEvent, Requester, Runner
from services.inference.cache import TrajectoryStore
from services.inference.metrics import Metrics
from services.inference.models import DiffusionModel
from services.inference.probes import PROBES
from services.inference.ratelimit import RateLimiter
from services.inference.runner import ErrorEvent, FinalEvent, HeaderEvent, StepEvent
from services.inference.validation import GenerationSpec

log = logging.getLogger(__name__)

ALL_PROBES = frozenset(PROBES)
# A batch of events a reader is behind on stays under this many bytes (unless one event alone is larger).
MAX_BATCH_BYTES = 2**20


class TrajectoryFailed(Exception):
    """The generation behind a trajectory failed, or was stopped on purpose; the message is for the student."""

    def __init__(self, message: str, aborted: bool = False) -> None:
        super().__init__(message)
        self.aborted = aborted


class Trajectory:
    """The events of one generation, in order: header, frames, final."""

    def __init__(self, key: str, request: pb.GenerateRequest, model: DiffusionModel) -> None:
        self.key = key
        self.request = canonical_request(request)
        self.model_id, self.revision = model.model_id, model.revision
        self.events: list[pb.GenerateResponse] = []
        self.finished = False
        self.error: str | None = None
        self.aborted = False  # the error is a deliberate stop (the teacher cleared the queue)
        # Set once the trajectory is loaded, started or refused (`refused` tells which).
        self.settled = asyncio.Event()
        self.nbytes = 0
        self.readers = 0
        self.lesson_entry = ""  # set when a lesson asked for it: then it is kept for good
        self.stored_in: Namespace | None = None
        self.job: Job | None = None
        self.pump: asyncio.Task[None] | None = None
        self.queue: pb.QueueStatus | None = None  # while waiting for the GPU
        self._grew = asyncio.Event()
        # Per include mask: each event serialized as readers with that mask receive it.
        self._wires: dict[frozenset[str], list[bytes]] = {}

    def append(self, event: pb.GenerateResponse) -> None:
        self.events.append(event)
        self.nbytes += event.ByteSize()
        self._wake()

    def finish(self, error: str | None = None, aborted: bool = False) -> None:
        self.finished, self.error, self.aborted = True, error, aborted
        self.settled.set()
        self._wake()

    @property
    def refused(self) -> bool:
        """Its start was refused (rate limit, queue, student busy): it ended before any work."""
        return self.error is not None and self.job is None

    async def wait(self) -> None:
        """Until the trajectory is finished (and stored); raise TrajectoryFailed if it failed."""
        while True:
            grew = self._grew
            if self.finished:
                break
            await grew.wait()
        if self.error is not None:
            raise TrajectoryFailed(self.error, self.aborted)

    def queued(self, status: pb.QueueStatus) -> None:
        self.queue = status
        self._wake()

    def _wake(self) -> None:
        self._grew.set()
        self._grew = asyncio.Event()

    def _wire(self, index: int, include: frozenset[str]) -> bytes:
        """Event `index` serialized as a reader with this include mask sees it; done once per mask."""
        wire = self._wires.setdefault(include, [])
        while len(wire) < min(index + 1, len(self.events)):
            event = self.events[len(wire)]
            if include != ALL_PROBES:
                event = frames.filter_event(event, include)
            data = event.SerializeToString()
            wire.append(data)
            self.nbytes += len(data)
        return wire[index]

    async def follow(self, include: frozenset[str], opening: pb.GenerateResponse) -> AsyncIterator[tuple[bytes, int]]:
        """One reader's stream, serialized: `opening`, everything so far, then each new event, to the end.

        Yields (message, frames in it). Until the header arrives, a reader also hears each
        change of the queue position. Events the reader is behind on go out together as
        EventBatch messages: the first ends with the first frame, and each later one may
        hold twice as many events as the one before, within MAX_BATCH_BYTES. So a cached
        replay costs a handful of messages instead of one per step, while a reader keeping
        up receives single events. Each event is serialized once per include mask, however
        many readers replay it.
        """
        index = 0
        queue_seen: pb.QueueStatus | None = None
        prefix: list[bytes] = [opening.SerializeToString()]  # messages before the events: status, queue
        start = index  # the events the next message holds: start..index
        batch_bytes = batch_frames = 0
        room = 0  # events the next message may hold; 0: up to the first frame
        while True:
            grew = self._grew  # taken before yielding, so that no change made meanwhile is missed
            if not self.events and self.queue is not None and self.queue != queue_seen:
                queue_seen = self.queue
                prefix.append(pb.GenerateResponse(queue=queue_seen).SerializeToString())
            while index < len(self.events):
                size = len(self._wire(index, include))
                count = len(prefix) + index - start
                if count and (count == room or batch_bytes + size > MAX_BATCH_BYTES):
                    yield self._message(include, prefix, start, index), batch_frames
                    prefix, start, batch_bytes, batch_frames, room = [], index, 0, 0, 2 * room
                is_frame = self.events[index].WhichOneof("event") == "frame"
                batch_bytes += size
                batch_frames += is_frame
                index += 1
                if room == 0 and is_frame:
                    room = len(prefix) + index - start  # the first message ends here
            if prefix or index > start:
                yield self._message(include, prefix, start, index), batch_frames
                prefix, start, batch_bytes, batch_frames, room = [], index, 0, 0, 2 * room
            if self.finished:
                if self.error is not None:
                    raise TrajectoryFailed(self.error, self.aborted)
                return
            await grew.wait()

    def _message(self, include: frozenset[str], prefix: list[bytes], start: int, end: int) -> bytes:
        """`prefix` (status, queue positions) and events start..end as one message."""
        return frames.batch_wire(prefix + [self._wire(i, include) for i in range(start, end)])

    def record(self) -> store_pb.TrajectoryRecord:
        return store_pb.TrajectoryRecord(
            request=self.request,
            model_id=self.model_id,
            model_revision=self.revision,
            events=self.events,
            lesson_entry_id=self.lesson_entry,
        )


@dataclasses.dataclass
class HubStats:
    cache_hits: int = 0
    cache_misses: int = 0
    single_flight_joins: int = 0


class TrajectoryHub:
    """Finds or starts the trajectory for a request: running, remembered, in Redis, or new."""

    def __init__(
        self,
        model: DiffusionModel,
        runner: Runner,
        store: TrajectoryStore,
        encoder: Executor,
        memory_bytes: int,
        metrics: Metrics,
        limiter: RateLimiter,
        single_flight: bool = True,
    ) -> None:
        self.model, self.runner, self.store, self.encoder = model, runner, store, encoder
        self.metrics = metrics
        self.limiter = limiter
        self.memory_bytes = memory_bytes
        self.single_flight = single_flight
        self.stats = HubStats()
        self._live: dict[str, Trajectory] = {}
        self._recent: OrderedDict[str, Trajectory] = OrderedDict()

    def key(self, spec: GenerationSpec) -> str:
        return trajectory_id(spec.to_proto(), self.model.model_id, self.model.revision)

    async def open(self, spec: GenerationSpec, requester: Requester, lesson_entry: str = "") -> tuple[Trajectory, int]:
        """The trajectory this request reads, with its source; the caller must `release` it.

        Raises the refusals (RateLimited, StudentBusy, QueueFull) when the model would have to run.
        `lesson_entry` must already be checked against the catalog: it exempts from the rate
        limit and keeps the result for good.
        """
        key = self.key(spec)
        exempt = bool(lesson_entry)
        if not self.single_flight:
            trajectory = Trajectory(key, spec.to_proto(), self.model)
            source = await self._start(trajectory, spec, requester, exempt)
        elif (trajectory := self._live.get(key)) is not None:
            # An identical request got here first; while it looks in the cache, wait for the outcome.
            await trajectory.settled.wait()
            if trajectory.refused:  # its start was refused, for its own reasons: try on this request's own
                return await self.open(spec, requester, lesson_entry)
            source = pb.TRAJECTORY_SOURCE_JOINED if trajectory.job is not None else pb.TRAJECTORY_SOURCE_CACHE
        elif (trajectory := self._recent.get(key)) is not None:
            self._recent.move_to_end(key)
            source = pb.TRAJECTORY_SOURCE_CACHE
        else:
            # Registered before the cache lookup, so identical requests arriving meanwhile
            # join it; shielded, so that a caller who gives up mid-lookup leaves it whole.
            trajectory = Trajectory(key, spec.to_proto(), self.model)
            self._live[key] = trajectory
            source = await asyncio.shield(self._load_or_start(trajectory, spec, requester, exempt))
        if lesson_entry:
            await self._keep_as_lesson(trajectory, lesson_entry)
        trajectory.readers += 1
        self._count(source)
        return trajectory, source

    def _count(self, source: int) -> None:
        if source == pb.TRAJECTORY_SOURCE_CACHE:
            self.stats.cache_hits += 1
            self.metrics.cache_hits.inc()
        elif source == pb.TRAJECTORY_SOURCE_JOINED:
            self.stats.single_flight_joins += 1
        else:
            self.stats.cache_misses += 1
            self.metrics.cache_misses.inc()

    async def _load_or_start(
        self, trajectory: Trajectory, spec: GenerationSpec, requester: Requester, exempt: bool
    ) -> int:
        found = await self.store.load(trajectory.key)
        if found is not None:
            record, namespace = found
            for event in record.events:
                trajectory.append(event)
            trajectory.lesson_entry = record.lesson_entry_id
            trajectory.stored_in = namespace
            trajectory.finish()
            self._live.pop(trajectory.key, None)
            self._remember(trajectory)
            return pb.TRAJECTORY_SOURCE_CACHE
        try:
            return await self._start(trajectory, spec, requester, exempt)
        except Exception as refusal:
            # Requests that joined during the cache lookup try again on their own (see `open`).
            self._live.pop(trajectory.key, None)
            trajectory.finish(error=str(refusal) or type(refusal).__name__)
            raise

    async def _start(self, trajectory: Trajectory, spec: GenerationSpec, requester: Requester, exempt: bool) -> int:
        """Put the model to work, after the student's rate limit (curated lesson examples are exempt)."""
        if not exempt:
            await self.limiter.take(requester.student)
        # Every probe is computed, whatever this reader asked for: the trajectory
        # serves every later reader and the cache, whatever they ask for.
        trajectory.job = self.runner.submit(dataclasses.replace(spec, include=ALL_PROBES), requester)
        trajectory.pump = asyncio.create_task(self._pump(trajectory, trajectory.job))
        trajectory.settled.set()
        return pb.TRAJECTORY_SOURCE_COMPUTED

    def release(self, trajectory: Trajectory) -> None:
        """A reader is done; when the last reader of unfinished work leaves, the work stops."""
        trajectory.readers -= 1
        if trajectory.readers == 0 and not trajectory.finished and trajectory.job is not None:
            self.runner.cancel(trajectory.job)
            if trajectory.pump is not None:
                trajectory.pump.cancel()
            trajectory.finish(error="cancelled")
            if self._live.get(trajectory.key) is trajectory:
                del self._live[trajectory.key]

    async def _pump(self, trajectory: Trajectory, job: Job) -> None:
        """Encode the runner's events off the event loop and append them to the log."""
        loop = asyncio.get_running_loop()
        model = self.model
        try:
            while True:
                event = await job.events.get()
                if isinstance(event, ErrorEvent):
                    trajectory.finish(error=event.message, aborted=event.aborted)
                    return
                if isinstance(event, QueueEvent):
                    trajectory.queued(pb.QueueStatus(position=event.position, waiting=event.waiting))
                    continue
                encode: tuple[Callable[..., pb.GenerateResponse], ...]
                if isinstance(event, HeaderEvent):
                    encode = (frames.header_message, event, model.model_id, model.revision)
                elif isinstance(event, StepEvent):
                    encode = (frames.frame_message, event, ALL_PROBES)
                else:
                    encode = (frames.final_message, event)
                trajectory.append(await loop.run_in_executor(self.encoder, *encode))
                if isinstance(event, FinalEvent):
                    break
            if event.flagged:
                # A picture the safety checker flagged is never replayed: each request is checked anew.
                trajectory.finish()
                return
            # Readers already have the final image; their streams end once it is stored,
            # so that a finished stream means a cached trajectory (when Redis is there).
            namespace = Namespace.LESSON if trajectory.lesson_entry else Namespace.AD_HOC
            if await self.store.save(trajectory.record(), namespace):
                trajectory.stored_in = namespace
            trajectory.finish()
            self._remember(trajectory)
        finally:
            if self._live.get(trajectory.key) is trajectory:
                del self._live[trajectory.key]

    async def _keep_as_lesson(self, trajectory: Trajectory, lesson_entry: str) -> None:
        """Mark a trajectory as a lesson's; a finished one not yet in the lesson namespace is moved there."""
        trajectory.lesson_entry = trajectory.lesson_entry or lesson_entry
        if not trajectory.finished or trajectory.error is not None or trajectory.stored_in is Namespace.LESSON:
            return  # a running trajectory is stored as a lesson's when it finishes
        if await self.store.save(trajectory.record(), Namespace.LESSON):
            trajectory.stored_in = Namespace.LESSON

    def _remember(self, trajectory: Trajectory) -> None:
        """Keep finished trajectories in memory, most recently used last, within the byte budget."""
        self._recent[trajectory.key] = trajectory
        self._recent.move_to_end(trajectory.key)
        total = sum(t.nbytes for t in self._recent.values())
        while total > self.memory_bytes and len(self._recent) > 1:
            _, evicted = self._recent.popitem(last=False)
            total -= evicted.nbytes

    def forget(self) -> None:
        """Drop the in-memory copies (the next reads come from Redis)."""
        self._recent.clear()

    async def close(self) -> None:
        pumps = [t.pump for t in self._live.values() if t.pump is not None]
        for pump in pumps:
            pump.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
