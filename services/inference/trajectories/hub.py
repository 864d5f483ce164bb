"""The trajectory hub: finds or starts the trajectory a request reads.

Running (single flight: identical requests share one generation), remembered
in memory, stored in Redis, running on another replica (followed through Redis,
`relay.py`), or new: then the Classroom is asked (`admit`) before the model is
put to work, under a claim in Redis that other replicas see (`lease.py`). The hub
writes finished trajectories back to Redis, stops work that nobody reads any
more, and takes over the work of a replica that died while its readers here wait.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor

from services.common.api import pb, store_pb
from services.common.trajectories import Namespace, trajectory_id
from services.inference.diffusion.batching import BatchScheduler
from services.inference.diffusion.events import ErrorEvent, FinalEvent, HeaderEvent, QueueEvent, StepEvent
from services.inference.diffusion.jobs import MODEL_FAILURE, Job, Requester
from services.inference.diffusion.models import DiffusionModel
from services.inference.diffusion.probes import computed_probes
from services.inference.diffusion.spec import GenerationSpec
from services.inference.metrics import Metrics
from services.inference.refusals import sentences_of
from services.inference.trajectories import frames, relay
from services.inference.trajectories.cache import TrajectoryStore
from services.inference.trajectories.lease import Lease
from services.inference.trajectories.log import Trajectory
from services.inference.trajectories.record import RecordParts, SignedSoFar

log = logging.getLogger(__name__)


def _encoded(
    event: HeaderEvent | StepEvent | FinalEvent, model: DiffusionModel, signing: SignedSoFar | None
) -> pb.GenerateResponse:
    """The event's stream message (`frames.encode`), signed for the store as it is made: the encoders' work."""
    message = frames.encode(event, model)
    if signing is not None:
        signing.add(message)
    return message


@dataclasses.dataclass
class HubStats:
    cache_hits: int = 0
    cache_misses: int = 0
    single_flight_joins: int = 0  # with readers of another replica's computation (followed through Redis)
    takeovers: int = 0  # computations taken over from a replica that died or gave them up


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
        shared_flight: bool = False,
        lease_s: float = 3.0,
    ) -> None:
        self.model, self.scheduler, self.store, self.encoder = model, scheduler, store, encoder
        self.metrics = metrics
        self.admit = admit  # the classroom's rules for putting the model to work (may refuse)
        self.memory_bytes = memory_bytes
        self.single_flight = single_flight
        # Across replicas on one Redis: claim what this replica computes, follow what another one does.
        self.shared = shared_flight and single_flight and store.configured
        self.lease = Lease(lease_s)
        self.stats = HubStats()
        self._live: dict[str, Trajectory] = {}
        self._stopped_for_requester: set[str] = set()  # trajectories whose job stops for its requester's reason
        self._recent: OrderedDict[str, Trajectory] = OrderedDict()

    def key(self, spec: GenerationSpec) -> str:
        """The trajectory's name in the cache (and in its claim): the request, the model and its revision.

        A class's taught word (lesson 10) makes another model: its digest joins the revision.
        """
        return trajectory_id(spec.to_proto(), self.model.model_id, self._revision(spec))

    def _revision(self, spec: GenerationSpec) -> str:
        return f"{self.model.revision}+{spec.taught}" if spec.taught else self.model.revision

    def _trajectory(self, key: str, spec: GenerationSpec) -> Trajectory:
        return Trajectory(key, spec.to_proto(), self.model, self._revision(spec))

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
            trajectory = self._trajectory(key, spec)
            source = await self._start(trajectory, spec, requester, exempt)
        elif (trajectory := self._live.get(key)) is not None:
            # An identical request got here first; while it looks in the cache, wait for the outcome.
            await trajectory.settled.wait()
            if trajectory.refused:  # its start was refused, for its own reasons: try on this request's own
                return await self.open(spec, requester, key, lesson_entry, free)
            running = trajectory.job is not None or trajectory.relay is not None
            source = pb.TRAJECTORY_SOURCE_JOINED if running else pb.TRAJECTORY_SOURCE_CACHE
        elif (trajectory := self._recent.get(key)) is not None:
            self._recent.move_to_end(key)
            source = pb.TRAJECTORY_SOURCE_CACHE
        else:
            # Registered before the cache lookup, so identical requests arriving meanwhile
            # join it; shielded, so that a caller who gives up mid-lookup leaves it whole.
            trajectory = self._trajectory(key, spec)
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
        if self.shared:  # one round trip: stored, being computed by another replica, or now ours to compute
            found, claimed = await self.store.find_or_claim(trajectory.key, self.lease)
        else:
            found, claimed = await self.store.load(trajectory.key), None
        if found is not None:
            trajectory.complete_from(*found)
            self._live.pop(trajectory.key, None)
            self._remember(trajectory)
            return pb.TRAJECTORY_SOURCE_CACHE
        if claimed is False:
            # Another replica computes it: its readers here follow it (a join, so no charge).
            trajectory.relay = asyncio.create_task(self._follow(trajectory, spec, requester, exempt))
            trajectory.settled.set()
            return pb.TRAJECTORY_SOURCE_JOINED
        try:
            return await self._start(trajectory, spec, requester, exempt, owned=bool(claimed))
        except Exception as refusal:
            # Requests that joined during the cache lookup try again on their own (see `open`).
            self._live.pop(trajectory.key, None)
            trajectory.finish(error=sentences_of(refusal))
            if claimed:  # readers on other replicas start it on their own terms at once
                await relay.give_up(self.store, trajectory, self.lease, relay.End.REFUSED)
            raise

    async def _start(
        self, trajectory: Trajectory, spec: GenerationSpec, requester: Requester, lesson: bool, owned: bool = False
    ) -> int:
        """Put the model to work, if the classroom admits it; `owned`: under this replica's claim in Redis."""
        # Every cheap probe is computed, whatever this reader asked for: the trajectory serves
        # every later reader and the cache. Costly ones only when asked: they are in the key.
        computed = computed_probes(spec.include)
        trajectory.job = await self.admit(dataclasses.replace(spec, include=computed), requester, lesson)
        trajectory.pump = asyncio.create_task(self._pump(trajectory, trajectory.job))
        if owned:  # other replicas' readers get its events (a takeover's readers elsewhere: those after theirs)
            taken_over = bool(trajectory.events) or trajectory.relay is not None
            trajectory.publisher = asyncio.create_task(
                relay.publish(self.store, trajectory, self.lease, first=len(trajectory.events), watched=taken_over)
            )
        trajectory.settled.set()
        return pb.TRAJECTORY_SOURCE_COMPUTED

    async def _follow(self, trajectory: Trajectory, spec: GenerationSpec, requester: Requester, exempt: bool) -> None:
        """Read another replica's computation into this log; compute it here when that replica cannot go on."""
        try:
            handover = await relay.follow(self.store, trajectory, self.lease)
        except Exception:
            log.exception("trajectory %s could not be followed from Redis", trajectory.key)
            handover = relay.Handover(claimed=None, started=True)
        if handover is None:
            self._ended(trajectory)
            if trajectory.error is None and not trajectory.flagged:
                self._remember(trajectory)
                if trajectory.lesson_entry:
                    await self._keep_as_lesson(trajectory, trajectory.lesson_entry)
            return
        await self._take_over(trajectory, spec, requester, exempt, handover)

    async def _take_over(
        self, trajectory: Trajectory, spec: GenerationSpec, requester: Requester, exempt: bool, handover: relay.Handover
    ) -> None:
        # Its owner died or gave it up: computed again here, from step 0; readers get the events they
        # lack. Work that had started was paid for, and its student's turn taken, where it started:
        # taking it over is not a new charge, and runs as the trajectory's own (not as the student's
        # second picture). Work that had not started is this replica's readers' own new request.
        self.stats.takeovers += 1
        log.info("taking over trajectory %s (%d events already here)", trajectory.key, len(trajectory.events))
        if handover.started:
            requester = dataclasses.replace(requester, student=f"takeover:{trajectory.key}", address="")
        try:
            await self._start(trajectory, spec, requester, exempt or handover.started, owned=bool(handover.claimed))
        except BaseException as refusal:
            # Refused, or its last reader left while it was being admitted (cancelled): either way the
            # claim goes back at once, so that readers elsewhere need not wait for the lease to run out.
            self._ended(trajectory)
            if not trajectory.finished:
                trajectory.finish(error=sentences_of(refusal))
            if handover.claimed:
                await relay.give_up(self.store, trajectory, self.lease, relay.End.REFUSED)
            if not isinstance(refusal, Exception):
                raise

    def _ended(self, trajectory: Trajectory) -> None:
        """It no longer runs here: identical requests arriving now look for it afresh."""
        if self._live.get(trajectory.key) is trajectory:
            del self._live[trajectory.key]

    def release(self, trajectory: Trajectory) -> None:
        """A reader is done; when the last reader of unfinished work leaves, the work stops."""
        trajectory.readers -= 1
        # (complete: all but said so; storing: its picture is made, and is stored for the next reader)
        if trajectory.readers or trajectory.finished or trajectory.complete or trajectory.storing:
            return
        if trajectory.job is not None:
            # (Its publisher then tells the other replicas, whose readers, if any, take it over.)
            self.scheduler.cancel(trajectory.job)
            if trajectory.pump is not None:
                trajectory.pump.cancel()
        elif trajectory.relay is not None:
            trajectory.relay.cancel()
        else:
            return
        trajectory.finish(error=relay.STOPPED_HERE)
        self._ended(trajectory)

    async def _pump(self, trajectory: Trajectory, job: Job) -> None:
        """Encode the worker's events off the event loop and append them to the log; store the finished trajectory."""
        loop = asyncio.get_running_loop()
        model = self.model
        index = 0  # of the event; a taken-over trajectory already holds the first ones (the owner's)
        final: pb.GenerateResponse | None = None  # the picture, held back until the trajectory is stored
        try:
            if self.store.configured and not trajectory.events:  # (signed, and staged in Redis, as it comes)
                trajectory.signed_so_far = self.store.signing(*trajectory.head)
            while True:
                event = await job.events.get()
                if isinstance(event, ErrorEvent):
                    if trajectory.key in self._stopped_for_requester:
                        await self._stopped_for_its_requester(trajectory, job, event)
                    else:
                        trajectory.finish(error=event.message, aborted=event.aborted)
                    return
                if isinstance(event, QueueEvent):
                    trajectory.queued(pb.QueueStatus(position=event.position, waiting=event.waiting))
                    continue
                if index >= len(trajectory.events):
                    message = await loop.run_in_executor(self.encoder, _encoded, event, model, trajectory.signed_so_far)
                    if isinstance(event, FinalEvent) and not event.flagged:
                        final = message
                    else:
                        trajectory.append(message)
                index += 1
                if isinstance(event, FinalEvent):
                    break
            if event.flagged:
                # A picture the safety checker flagged is never replayed: each request is checked anew.
                await self._let_go(trajectory)
                trajectory.finish()
                return
            # The picture is stored before any reader has it: a reader who has the picture (a lesson's
            # precompute, a student about to share it) finds it in the cache. Its stream ends once it is
            # also no longer claimed. From here on it is stored whoever still reads it (`release`).
            trajectory.storing = True
            tried = await self._store(trajectory, final)
            if final is not None:
                trajectory.append(final)
            await self._let_go(trajectory)
            await self._store(trajectory, None, tried)  # a lesson asked for it meanwhile: kept as a lesson's too
            trajectory.finish()  # (no wait since the last look at its lesson entry: `_keep_as_lesson` takes over)
            self._remember(trajectory)
        except Exception:
            # Encoding or storing failed (a CUDA error surfacing in a host copy, say): every
            # reader hears it now, and the model stops working for nobody.
            log.exception("trajectory %s failed while its events were encoded", trajectory.key)
            self.scheduler.cancel(job)
            trajectory.finish(error=MODEL_FAILURE)
        finally:
            if trajectory.job is job:  # (not when it goes on as another job: `_stopped_for_its_requester`)
                self._ended(trajectory)
                trajectory.unstage()  # (when it was not stored: stopped, failed or flagged)

    async def _store(
        self, trajectory: Trajectory, final: pb.GenerateResponse | None, tried: Namespace | None = None
    ) -> Namespace | None:
        """Store a finished trajectory (`final`: its picture, not yet in the log) in the namespace it belongs in.

        A lesson's is kept for good; a lesson that asks for it while it is stored as an ordinary
        picture (the store waits on a thread and on Redis) has it stored again, as the lesson's.
        Returns the namespace tried last; given it back as `tried`, only a lesson's mark made since
        stores it again. Without anything to store it returns at once, without waiting.
        """
        while (namespace := Namespace.LESSON if trajectory.lesson_entry else Namespace.AD_HOC) is not tried:
            tried = namespace
            if await self.store.save(trajectory.snapshot(final), namespace):
                trajectory.stored_in = namespace
        return tried

    def stop_jobs_of(self, chosen: Callable[[Requester], bool], sentence: str) -> int:
        """Stop every generation whose requester is `chosen`, for that requester's own reason (`sentence`).

        The sentence is the requester's alone (the teacher removed their name): readers of the
        same picture on other replicas take the work over (End.CANCELLED), and readers of it
        here have it computed on, as the trajectory's own work (`_stopped_for_its_requester`).
        """
        for trajectory in self._live.values():
            if trajectory.job is not None and chosen(trajectory.job.requester):
                self._stopped_for_requester.add(trajectory.key)
        return self.scheduler.stop_jobs_of(chosen, sentence)

    async def _stopped_for_its_requester(self, trajectory: Trajectory, job: Job, stop: ErrorEvent) -> None:
        """Its requester's job was stopped for the requester's own reason: nobody else hears that reason.

        Alone here (only the requester reads it), it ends with the sentence, and readers on other
        replicas take it over. Read here by others too (identical requests that joined it), it goes
        on as the trajectory's own work, without a charge, from where the job was stopped; the
        stopped requester's stream then ends with everyone's (a reader here is not told apart).
        """
        self._stopped_for_requester.discard(trajectory.key)
        if trajectory.readers > 1:
            requester = dataclasses.replace(job.requester, student=f"takeover:{trajectory.key}", address="")
            try:
                await self._start(trajectory, job.spec, requester, lesson=True)
                return
            except Exception as refusal:  # (the queue filled meanwhile, say): everyone hears that, not the sentence
                trajectory.finish(error=sentences_of(refusal))
                return
        if trajectory.publisher is not None:
            trajectory.publisher.cancel()
            await asyncio.gather(trajectory.publisher, return_exceptions=True)
            await relay.give_up(self.store, trajectory, self.lease, relay.End.CANCELLED)
        trajectory.finish(error=stop.message, aborted=stop.aborted)

    @staticmethod
    async def _let_go(trajectory: Trajectory) -> None:
        """A complete trajectory's claim: its end said on its stream and the claim let go, before its readers end."""
        if trajectory.publisher is not None:
            trajectory.mark_complete()
            await asyncio.wait([trajectory.publisher])  # (it never raises: Redis failures are the store's)

    async def _keep_as_lesson(self, trajectory: Trajectory, lesson_entry: str) -> None:
        """Mark a trajectory as a lesson's; a finished one not yet in the lesson namespace is moved there."""
        trajectory.lesson_entry = trajectory.lesson_entry or lesson_entry
        if not trajectory.finished or trajectory.error is not None or trajectory.stored_in is Namespace.LESSON:
            return  # a running (or storing) trajectory is stored as a lesson's by its pump (`_store`)
        record: store_pb.TrajectoryRecord | RecordParts = trajectory.snapshot()
        if trajectory.job is None and trajectory.relay is not None:
            # Followed from another replica: what is kept is what its owner stored (signed and checked
            # on the way back), never the events relayed to this replica.
            found = await self.store.load(trajectory.key)
            if found is None:
                return
            record = found[0]
            record.lesson_entry_id = trajectory.lesson_entry
        if await self.store.save(record, Namespace.LESSON):
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
        """Stop every task; hand back what this replica computes, so that readers elsewhere take it over at once."""
        running = list(self._live.values())
        tasks = [task for t in running for task in (t.pump, t.publisher, t.relay) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        owned = [t for t in running if t.publisher is not None and not t.finished]
        await asyncio.gather(*(relay.give_up(self.store, t, self.lease, relay.End.CANCELLED) for t in owned))
