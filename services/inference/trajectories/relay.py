"""A running trajectory's events through Redis: written by the replica computing it, read by the others.

The owner (the replica holding the trajectory's lease, `lease.py`) renews its lease
and, once another replica watches, appends every event to the trajectory's capped
stream as the bytes the cache stores (`publish`). A replica whose readers asked for
the same trajectory meanwhile follows that stream into its own log, which its
readers read as they read any other (`follow`). When the stream goes quiet for a
poll, the follower asks again (`TrajectoryStore.find_or_claim`): the trajectory is
stored (done), still claimed (the owner is alive, waiting for the GPU), or claimed
now by the follower, whose owner died or gave it up: then the follower's replica
computes it from step 0, and its readers get the events they do not have yet.

Stream entries: {i, e}: event number i (0 is the header) as its wire bytes; {q}:
the queue place while it waits for the GPU; {end, ...}: how it ended (`End`); a failure
also says its sentences, each with its template and arguments (`sentences`, JSON), so
that readers elsewhere are told in their language too, and its English (`error`). Each
entry also holds {s}: the cache secret's signature over the trajectory's key and the
entry's fields (`TrajectoryStore.sign`), so that nobody with only the Redis password
can feed a follower events: an entry that fails its check is never read, and the
follower's replica computes the trajectory itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

import redis.asyncio as redis

from services.common.api import pb
from services.common.i18n import Sentence
from services.common.trajectories import Namespace
from services.inference.trajectories.cache import TrajectoryStore
from services.inference.trajectories.lease import RELEASE, RENEW, Lease, lease_key, live_key, watch_key
from services.inference.trajectories.log import Trajectory

log = logging.getLogger(__name__)

# A finished trajectory's stream stays this long for readers still catching up; later readers find it stored.
KEEP_AFTER_END_MS = 30_000
# While it runs, the stream outlives its owner's lease this many times, so a replica taking it over still
# has what its readers were sent.
KEEP_WHILE_RUNNING = 10
_INDEX, _EVENT, _QUEUE, _END, _ERROR, _ABORTED, _NAMESPACE = b"i", b"e", b"q", b"end", b"error", b"aborted", b"ns"
_SIGNATURE, _SENTENCES = b"s", b"sentences"
# The error of work stopped here for this replica's own reasons (its readers left, its requester was
# removed): readers elsewhere take it over (End.CANCELLED) instead of hearing it.
STOPPED_HERE = "cancelled"
# Reading a stream: at most this many entries a round trip.
_READ_COUNT = 256


class End(enum.StrEnum):
    """How a trajectory's computation ended, as its stream says."""

    DONE = "done"  # every event is in the stream, and the trajectory is stored (`ns`) unless it could not be
    FAILED = "failed"  # the model failed, or the teacher stopped it: readers hear `error`
    # its owner stopped for reasons of its own (its readers left, it shuts down, its requester was removed):
    # take it over
    CANCELLED = "cancelled"
    REFUSED = "refused"  # its owner's start was refused (rate limit, queue): start it on your own terms


@dataclass(frozen=True)
class Handover:
    """Why a follower's replica must compute the trajectory itself."""

    # True: it holds the lease now; None: Redis cannot be asked, so nobody can claim; False: the stream
    # failed its signature check, so it is computed here, unclaimed (the lease is someone else's)
    claimed: bool | None
    started: bool  # the owner's work had started (it was admitted): the takeover is not a new charge


def _cap(trajectory: Trajectory) -> int:
    """The stream's length bound: every event and queue place of one computation, with room to spare."""
    return 2 * (trajectory.request.num_inference_steps + 3) + 64


def _signed(store: TrajectoryStore, key: str, fields: dict[bytes, bytes | str]) -> dict[bytes, bytes | str]:
    """A stream entry with its signature: over the trajectory's key and every field, name and value."""
    return {**fields, _SIGNATURE: store.sign(key.encode(), *_parts(fields))}


def _verified(store: TrajectoryStore, key: str, fields: dict[bytes, bytes]) -> bool:
    signature = fields.pop(_SIGNATURE, b"")
    return store.signed(signature, key.encode(), *_parts(fields))


def _parts(fields: Mapping[bytes, bytes | str]) -> list[bytes]:
    """The fields as signed: sorted by name, each value as Redis stores it (text as UTF-8)."""
    encoded = sorted((name, value if isinstance(value, bytes) else value.encode()) for name, value in fields.items())
    return [part for field in encoded for part in field]


def _end_fields(trajectory: Trajectory) -> dict[bytes, bytes | str]:
    sentences = trajectory.sentences
    if sentences is None:
        return {_END: End.DONE, _NAMESPACE: trajectory.stored_in or ""}
    if trajectory.error == STOPPED_HERE:
        return {_END: End.CANCELLED}
    return {
        _END: End.FAILED,
        _ERROR: str(trajectory.error).encode(errors="replace"),  # its English (a stray surrogate cannot be UTF-8)
        _SENTENCES: _sentences_json(sentences),
        _ABORTED: "1" if trajectory.aborted else "0",
    }


def _sentences_json(sentences: list[str]) -> str:
    """Each sentence as {template, args}, or {text} where it is not a `Sentence`; JSON, so ASCII whatever it says."""
    said = [{"template": s.template, "args": s.args} if isinstance(s, Sentence) else {"text": s} for s in sentences]
    return json.dumps(said)


def _failure(end: Mapping[bytes, bytes]) -> list[str]:
    """A failed end's sentences, rebuilt; from `error` alone where it says no more (an older replica wrote it)."""
    english = [end[_ERROR].decode(errors="replace")]
    if _SENTENCES not in end:
        return english
    try:
        said = json.loads(end[_SENTENCES])
        return [Sentence(s["template"], **s["args"]) if "template" in s else str(s["text"]) for s in said] or english
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        log.warning("a failed trajectory's sentences could not be read back; its readers get the English")
        return english


async def publish(
    store: TrajectoryStore, trajectory: Trajectory, lease: Lease, first: int = 0, watched: bool = False
) -> None:
    """Renew the trajectory's lease until it ends; once anyone watches, write its events from `first` on.

    Unwatched (a replica alone, or nobody elsewhere asking for this picture): one round trip
    each `lease.renew_every_s`, which also tells whether anyone watches now, and one at the
    end. Watched (from the start for a takeover, `watched`): one round trip for whatever
    arrived since the last (every frame on a quiet server, a batch of them on a busy one),
    the renewal riding along when due. The end goes out once the trajectory is complete
    (stored) or finished otherwise (failed, stopped).
    """
    sent, queue_sent, lost = first, None, False
    renew_at = time.monotonic() + lease.renew_every_s  # the claim was just made, for a whole lease
    while True:
        change = trajectory.next_change()
        count, finished = len(trajectory.events), trajectory.finished or trajectory.complete
        renew = not finished and time.monotonic() >= renew_at
        wires = [trajectory.wire(i) for i in range(sent, count)] if watched else []
        queue = trajectory.queue if watched and not count and trajectory.queue != queue_sent else None
        if finished or renew or wires or queue is not None:
            write = functools.partial(_write, store, trajectory, lease, sent, wires, queue, finished, renew)
            written = await store.run(write)
            if renew:
                renew_at = time.monotonic() + lease.renew_every_s
            if written is not None:
                sent, queue_sent = sent + len(wires), queue or queue_sent
                if renew:
                    renewed, watching = written[-2]
                    if not renewed and not lost:
                        # Another replica took it over (this one was silent too long): both now compute it,
                        # and readers everywhere take each event once, whoever wrote it.
                        lost = True
                        log.warning("trajectory %s: its claim was lost to another replica", trajectory.key)
                    if watching and not watched:
                        watched = True
                        continue  # everything so far goes out at once
        if finished:
            return
        # Watched: wake at each event. Unwatched: only to renew, or at the end.
        awaited = change if watched else trajectory.ended
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(awaited.wait(), max(0.0, renew_at - time.monotonic()))


async def _write(
    store: TrajectoryStore,
    trajectory: Trajectory,
    lease: Lease,
    first: int,
    wires: list[bytes],
    queue: pb.QueueStatus | None,
    finished: bool,
    renew: bool,
    client: redis.Redis,
) -> list:
    """One round trip: the queue place or events from `first` on, then the end (letting go) or a renewal.

    The stream's expiry is set in every one, so that a stream is never left without one, whatever
    created it (the first events after the owner learned it was watched carry no renewal).
    """
    key = trajectory.key
    live, claim, cap = live_key(key), lease_key(key), _cap(trajectory)
    pipe = client.pipeline(transaction=False)
    if queue is not None:
        pipe.xadd(live, _signed(store, key, {_QUEUE: queue.SerializeToString()}), maxlen=cap, approximate=False)
    for index, wire in enumerate(wires, start=first):
        pipe.xadd(live, _signed(store, key, {_INDEX: str(index), _EVENT: wire}), maxlen=cap, approximate=False)
    if finished:
        pipe.xadd(live, _signed(store, key, _end_fields(trajectory)), maxlen=cap, approximate=False)
        pipe.eval(RELEASE, 1, claim, lease.owner)
        pipe.pexpire(live, KEEP_AFTER_END_MS)
    else:
        if renew:
            pipe.eval(RENEW, 2, claim, watch_key(key), lease.owner, lease.lease_ms)
        pipe.pexpire(live, KEEP_WHILE_RUNNING * lease.lease_ms)
    return await pipe.execute()


async def give_up(store: TrajectoryStore, trajectory: Trajectory, lease: Lease, end: End) -> None:
    """Let go of a claim without finishing: readers elsewhere take it over at once (REFUSED, CANCELLED)."""
    key, cap = trajectory.key, _cap(trajectory)  # (the stream's bound: a late reader still gets every event)

    async def write(client: redis.Redis) -> list:
        pipe = client.pipeline(transaction=False)
        pipe.xadd(live_key(key), _signed(store, key, {_END: end}), maxlen=cap, approximate=False)
        pipe.eval(RELEASE, 1, lease_key(key), lease.owner)
        pipe.pexpire(live_key(key), KEEP_AFTER_END_MS)
        return await pipe.execute()

    await store.run(write)


async def follow(store: TrajectoryStore, trajectory: Trajectory, lease: Lease) -> Handover | None:
    """Append another replica's events for this trajectory to its log here, until it ends.

    Returns None when the trajectory ended as its owner said (finished, or failed), or
    the Handover that says this replica must now compute it: its owner cannot go on, or
    an entry failed its signature check (then nothing after it is read).
    """
    # A claim is made before its owner's start is admitted, and a refused start says so (REFUSED):
    # otherwise the owner's work had started, and had been paid for.
    live, last, started = live_key(trajectory.key), "0-0", True

    async def read(client: redis.Redis) -> list:
        return await client.xread({live: last}, count=_READ_COUNT, block=lease.poll_ms) or []

    while True:
        reply = await store.run(read)
        if reply is None:  # Redis went away: nobody can follow or claim, each replica computes its own
            return Handover(claimed=None, started=started)
        end: dict[bytes, bytes] | None = None
        for _, entries in reply:
            for entry_id, fields in entries:
                last = entry_id
                if not _verified(store, trajectory.key, fields):
                    log.warning("trajectory %s: a live stream entry failed its signature check", trajectory.key)
                    return Handover(claimed=False, started=started)
                if _EVENT in fields:
                    if int(fields[_INDEX]) == len(trajectory.events):  # (a takeover's repeats are skipped)
                        trajectory.append(pb.GenerateResponse.FromString(fields[_EVENT]))
                elif _QUEUE in fields:
                    if not trajectory.events:
                        trajectory.queued(pb.QueueStatus.FromString(fields[_QUEUE]))
                elif _END in fields:
                    end = fields
        if end is not None:
            kind = End(end[_END].decode())
            if kind is End.FAILED:
                trajectory.finish(error=_failure(end), aborted=end.get(_ABORTED) == b"1")
                return None
            if kind is End.DONE and trajectory.events and trajectory.events[-1].WhichOneof("event") == "final":
                namespace = end.get(_NAMESPACE, b"").decode()
                trajectory.stored_in = Namespace(namespace) if namespace else None
                trajectory.finish()
                return None
            started = kind is not End.REFUSED
        elif reply:
            continue  # more may follow at once
        # Quiet for a poll, or ended without everything here: stored, still claimed, or ours now?
        found, claimed = await store.find_or_claim(trajectory.key, lease, takeover=True)
        if found is not None:
            trajectory.complete_from(*found)
            return None
        if claimed is not False:
            return Handover(claimed=claimed, started=started)
        # Another replica claimed it (it took it over just now): its events follow on the same stream.
