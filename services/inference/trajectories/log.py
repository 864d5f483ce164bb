"""Trajectories: each generation an append-only log that any number of readers follow.

The request that starts a generation, identical requests that arrive while it
runs (single flight), and later requests served from the cache all read the
same log, each at its own pace. Appending never waits for a reader, so a slow
reader never holds up the model.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from services.common.api import pb, store_pb
from services.common.trajectories import Namespace, canonical_request
from services.inference.diffusion.jobs import Job
from services.inference.diffusion.models import DiffusionModel
from services.inference.diffusion.probes import computed_probes
from services.inference.refusals import TrajectoryFailed
from services.inference.trajectories import frames
from services.inference.trajectories.record import RecordParts, SignedSoFar

# A batch of events a reader is behind on stays under this many bytes (unless one event alone is larger).
MAX_BATCH_BYTES = 2**20
# While a trajectory waits for the GPU, each reader hears its queue place again this often, changed or
# not: a reader that went away (a closed tab) finds out when it next writes, and its place is freed.
QUEUE_REMINDER_S = 5.0


class Trajectory:
    """The events of one generation, in order: header, frames, final."""

    def __init__(self, key: str, request: pb.GenerateRequest, model: DiffusionModel, revision: str = "") -> None:
        self.key = key
        self.request = canonical_request(request)
        self.computed = computed_probes(frozenset(self.request.include.paths))  # what its frames hold
        # `revision`: a class's own model's (lesson 10), the model's and its word's digest
        self.model_id, self.revision = model.model_id, revision or model.revision
        self.events: list[pb.GenerateResponse] = []
        self.finished = False
        # Why it failed, sentence by sentence as the student reads it (None: it did not): each a `Sentence` where
        # it was written as one, so that its readers' clients write it in their language (TrajectoryFailed).
        self.sentences: list[str] | None = None
        self.aborted = False  # the error is a deliberate stop (the teacher cleared the queue)
        # Set once the trajectory is loaded, started or refused (`refused` tells which).
        self.settled = asyncio.Event()
        # Every event is in, and it is stored: its owner may tell other replicas before its readers end.
        self.complete = False
        self.ended = asyncio.Event()  # set when it is complete or finished (or failed)
        self.nbytes = 0
        self.readers = 0
        self.lesson_entry = ""  # set when a lesson asked for it: then it is kept for good
        self.stored_in: Namespace | None = None
        # Its events signed as they come, when it is computed here from its first event (`hub._pump`).
        self.signed_so_far: SignedSoFar | None = None
        # Its picture is made and being stored (before readers see it): it ends so, whoever still reads it.
        self.storing = False
        self.job: Job | None = None
        self.pump: asyncio.Task[None] | None = None
        # Across replicas (relay.py): the task writing this computation's events to Redis for the
        # other replicas, or the one reading another replica's computation of it from there.
        self.publisher: asyncio.Task[None] | None = None
        self.relay: asyncio.Task[None] | None = None
        self.queue: pb.QueueStatus | None = None  # while waiting for the GPU
        self._grew = asyncio.Event()
        # Per include mask: each event serialized as readers with that mask receive it.
        self._wires: dict[frozenset[str], list[bytes]] = {}

    def append(self, event: pb.GenerateResponse) -> None:
        self.events.append(event)
        self.nbytes += event.ByteSize()
        self._wake()

    def complete_from(self, record: store_pb.TrajectoryRecord, namespace: Namespace) -> None:
        """Finish with a stored copy of the same trajectory: the events this log does not have yet."""
        for event in record.events[len(self.events) :]:
            self.append(event)
        self.lesson_entry = self.lesson_entry or record.lesson_entry_id
        self.stored_in = namespace
        self.finish()

    def mark_complete(self) -> None:
        self.complete = True
        self.ended.set()
        self._wake()

    def finish(self, error: str | list[str] | None = None, aborted: bool = False) -> None:
        """It ends: done, or failed with `error`, one sentence or several (a refusal's: `sentences_of`)."""
        self.finished, self.aborted = True, aborted
        self.sentences = None if error is None else [error] if isinstance(error, str) else list(error)
        self.settled.set()
        self.ended.set()
        self._wake()

    @property
    def error(self) -> str | None:
        """Why it failed, in English as one text; None if it did not."""
        return None if self.sentences is None else " ".join(self.sentences)

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
        if self.sentences is not None:
            raise TrajectoryFailed(self.sentences, self.aborted)

    def queued(self, status: pb.QueueStatus) -> None:
        self.queue = status
        self._wake()

    def next_change(self) -> asyncio.Event:
        """Set at the next change (an event, the queue place, the end): take it before reading the state."""
        return self._grew

    @property
    def made(self) -> bool:
        """The model's work for it is over: its picture (the final event) is in the log, stored or not, or it ended."""
        return self.finished or (bool(self.events) and self.events[-1].HasField("final"))

    @property
    def flagged(self) -> bool:
        """Its picture was flagged by the safety checker (such a trajectory is never replayed)."""
        return bool(self.events) and self.events[-1].final.safety_flagged

    def wire(self, index: int) -> bytes:
        """Event `index` as stored, with every probe it holds (the bytes other replicas' readers get)."""
        return self._wire(index, self.computed)

    def _wake(self) -> None:
        self._grew.set()
        self._grew = asyncio.Event()

    def _wire(self, index: int, include: frozenset[str]) -> bytes:
        """Event `index` serialized as a reader with this include mask sees it; done once per mask."""
        wire = self._wires.setdefault(include, [])
        while len(wire) < min(index + 1, len(self.events)):
            event = self.events[len(wire)]
            if include != self.computed:
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
        reminder_due = False
        prefix: list[bytes] = [opening.SerializeToString()]  # messages before the events: status, queue
        start = index  # the events the next message holds: start..index
        batch_bytes = batch_frames = 0
        room = 0  # events the next message may hold; 0: up to the first frame
        while True:
            grew = self._grew  # taken before yielding, so that no change made meanwhile is missed
            if not self.events and self.queue is not None and (self.queue != queue_seen or reminder_due):
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
                if index < len(self.events):
                    continue  # the last events (the final image) came while the message above was sent
                if self.sentences is not None:
                    raise TrajectoryFailed(self.sentences, self.aborted)
                return
            reminder_due = False
            if self.events or self.queue is None:
                await grew.wait()
            else:  # waiting in the queue: wake at least every QUEUE_REMINDER_S
                try:
                    await asyncio.wait_for(grew.wait(), QUEUE_REMINDER_S)
                except TimeoutError:
                    reminder_due = True

    def _message(self, include: frozenset[str], prefix: list[bytes], start: int, end: int) -> bytes:
        """`prefix` (status, queue positions) and events start..end as one message."""
        return frames.batch_wire(prefix + [self._wire(i, include) for i in range(start, end)])

    def record(self) -> store_pb.TrajectoryRecord:
        return self.snapshot().record()

    @property
    def head(self) -> tuple[pb.GenerateRequest, str, str]:
        """What its record begins with: the request, the model and the model's revision."""
        return self.request, self.model_id, self.revision

    def unstage(self) -> None:
        """Forget its bytes staged in Redis (staging.py), unless it was stored from them."""
        if self.signed_so_far is not None and self.signed_so_far.staging is not None:
            self.signed_so_far.staging.drop()

    def snapshot(self, final: pb.GenerateResponse | None = None) -> RecordParts:
        """Its record as it stands now (and `final`: its picture, not yet in the log), to be packed off the loop."""
        events = (*self.events, final) if final is not None else tuple(self.events)
        return RecordParts(*self.head, events, self.lesson_entry, self.signed_so_far)
