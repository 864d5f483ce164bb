"""The trajectory hub: finds or starts the trajectory a request reads.

Running (single flight: identical requests share one generation), remembered
in memory, stored in Redis, or new: then the Classroom is asked (`admit`)
before the model is put to work. The hub writes finished trajectories back to
Redis, and stops work that nobody reads any more.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor

from services.common.api import pb
from services.common.trajectories import Namespace, trajectory_id
from services.inference.diffusion.batching import BatchScheduler
from services.inference.diffusion.events import ErrorEvent, FinalEvent, QueueEvent
from services.inference.diffusion.jobs import MODEL_FAILURE, Job, Requester
from services.inference.diffusion.models import DiffusionModel
from services.inference.diffusion.probes import computed_probes
from services.inference.diffusion.spec import GenerationSpec
from services.inference.metrics import Metrics
from services.inference.trajectories import frames
from services.inference.trajectories.cache import TrajectoryStore
from services.inference.trajectories.log import Trajectory

log = logging.getLogger(__name__)


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
        scheduler: BatchScheduler,
        store: TrajectoryStore,
        encoder: Executor,
        memory_bytes: int,
        metrics: Metrics,
        admit: Callable[[GenerationSpec, Requester, bool], Awaitable[Job]],
        single_flight: bool = True,
    ) -> None:
        self.model, self.scheduler, self.store, self.encoder = model, scheduler, store, encoder
        self.metrics = metrics
        self.admit = admit  # the classroom's rules for putting the model to work (may refuse)
        self.memory_bytes = memory_bytes
        self.single_flight = single_flight
        self.stats = HubStats()
        self._live: dict[str, Trajectory] = {}
        self._recent: OrderedDict[str, Trajectory] = OrderedDict()

    def key(self, spec: GenerationSpec) -> str:
        return trajectory_id(spec.to_proto(), self.model.model_id, self.model.revision)

    async def open(
        self, spec: GenerationSpec, requester: Requester, key: str, lesson_entry: str = "", free: bool = False
    ) -> tuple[Trajectory, int]:
        """The trajectory this request reads, with its source; the caller must `release` it.

        `key` is `self.key(spec)`, which the caller has already computed for its own checks.
        Raises what `admit` raises when the model would have to run. `lesson_entry` must already
        be checked against the catalog: it keeps the result for good. A lesson, or a request the
        classroom says is `free` (resumed after a restart), is put to work without a token.
        """
        exempt = bool(lesson_entry) or free
        if not self.single_flight:
            trajectory = Trajectory(key, spec.to_proto(), self.model)
            source = await self._start(trajectory, spec, requester, exempt)
        elif (trajectory := self._live.get(key)) is not None:
            # An identical request got here first; while it looks in the cache, wait for the outcome.
            await trajectory.settled.wait()
            if trajectory.refused:  # its start was refused, for its own reasons: try on this request's own
                return await self.open(spec, requester, key, lesson_entry, free)
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

    async def _start(self, trajectory: Trajectory, spec: GenerationSpec, requester: Requester, lesson: bool) -> int:
        """Put the model to work, if the classroom admits it."""
        # Every cheap probe is computed, whatever this reader asked for: the trajectory serves
        # every later reader and the cache. Costly ones only when asked: they are in the key.
        computed = computed_probes(spec.include)
        trajectory.job = await self.admit(dataclasses.replace(spec, include=computed), requester, lesson)
        trajectory.pump = asyncio.create_task(self._pump(trajectory, trajectory.job))
        trajectory.settled.set()
        return pb.TRAJECTORY_SOURCE_COMPUTED

    def release(self, trajectory: Trajectory) -> None:
        """A reader is done; when the last reader of unfinished work leaves, the work stops."""
        trajectory.readers -= 1
        if trajectory.readers == 0 and not trajectory.finished and trajectory.job is not None:
            self.scheduler.cancel(trajectory.job)
            if trajectory.pump is not None:
                trajectory.pump.cancel()
            trajectory.finish(error="cancelled")
            if self._live.get(trajectory.key) is trajectory:
                del self._live[trajectory.key]

    async def _pump(self, trajectory: Trajectory, job: Job) -> None:
        """Encode the worker's events off the event loop and append them to the log."""
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
                trajectory.append(await loop.run_in_executor(self.encoder, frames.encode, event, model))
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
        except Exception:
            # Encoding or storing failed (a CUDA error surfacing in a host copy, say): every
            # reader hears it now, and the model stops working for nobody.
            log.exception("trajectory %s failed while its events were encoded", trajectory.key)
            self.scheduler.cancel(job)
            trajectory.finish(error=MODEL_FAILURE)
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

    async def close(self) -> None:
        pumps = [t.pump for t in self._live.values() if t.pump is not None]
        for pump in pumps:
            pump.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
