"""Finished trajectories in Redis: the lesson namespace (kept) and the ad-hoc one (evictable).

The cache is an optimisation, never a dependency: when Redis cannot be reached
every operation quietly does nothing, the service generates uncached, and the
next attempt after a short pause finds Redis again without a restart.

A finished trajectory is megabytes (every probe of every step): its stored form is
made, signed (`RecordParts.packed`) and written on the store's own threads, never on
the event loop, so that every other reader's frames keep going while a class's pictures
are stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import redis.asyncio as redis
from redis import Redis as BlockingRedis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.retry import Retry as BlockingRetry

from services.common.api import pb, store_pb
from services.common.trajectories import (
    FORMAT_VERSION,
    CorruptTrajectory,
    Namespace,
    mac,
    pack,
    record_id,
    redis_key,
    trajectory_id,
    unpack,
)
from services.inference.trajectories.frames import length_delimited_tag, varint
from services.inference.trajectories.lease import FIND_OR_CLAIM, Lease, find_or_claim_keys

log = logging.getLogger(__name__)
T = TypeVar("T")

_EVENT_TAG = length_delimited_tag(store_pb.TrajectoryRecord.DESCRIPTOR.fields_by_name["events"])
_PAYLOAD_TAG = length_delimited_tag(store_pb.StoredTrajectory.DESCRIPTOR.fields_by_name["payload"])
PACKERS = 2  # threads that pack and write finished trajectories


def _head(request: pb.GenerateRequest, model_id: str, revision: str) -> bytes:
    """A record's fields 1-3, as `pack` writes them before the events."""
    head = store_pb.TrajectoryRecord(request=request, model_id=model_id, model_revision=revision)
    return head.SerializeToString(deterministic=True)


def _event_parts(event: pb.GenerateResponse) -> tuple[bytes, bytes, bytes]:
    """One event as a record's field 4 element: its tag, its length and its bytes."""
    data = event.SerializeToString(deterministic=True)
    return _EVENT_TAG, varint(len(data)), data


class SignedSoFar:
    """A trajectory's signature (`pack`'s HMAC) over the events it has so far, made as each one comes.

    Signing a finished trajectory reads its megabytes at once, when a class's pictures all
    end together; signed event by event (on the frame encoders' threads, while the model
    works on the next step) only the picture is left to sign at the end (`RecordParts.packed`).
    Events are added in order by one thread at a time; `RecordParts.packed` reads a copy.
    """

    def __init__(self, secret: bytes, request: pb.GenerateRequest, model_id: str, revision: str) -> None:
        self.secret = secret
        self.head = (request, model_id, revision)
        self._signature = hmac.new(secret, _head(request, model_id, revision), digestmod=hashlib.sha256)
        self._events: list[pb.GenerateResponse] = []  # those signed, the very objects
        self._lock = threading.Lock()

    def add(self, event: pb.GenerateResponse) -> None:
        parts = _event_parts(event)
        with self._lock:
            for part in parts:
                self._signature.update(part)
            self._events.append(event)

    def covering(
        self, secret: bytes, head: tuple[pb.GenerateRequest, str, str], events: tuple[pb.GenerateResponse, ...]
    ) -> tuple[int, hmac.HMAC] | None:
        """(how many of `events` it signed, a copy of its signature) when it signed their start; else None."""
        with self._lock:
            signed, signature = len(self._events), self._signature.copy()
            same = signed <= len(events) and all(a is b for a, b in zip(self._events, events, strict=False))
        if secret != self.secret or head != self.head or not same:
            return None
        return signed, signature


@dataclass(frozen=True)
class RecordParts:
    """A finished trajectory's record (`store_pb.TrajectoryRecord`) as its parts, to be stored off the event loop."""

    request: pb.GenerateRequest
    model_id: str
    revision: str
    events: tuple[pb.GenerateResponse, ...]
    lesson_entry: str = ""
    signed_so_far: SignedSoFar | None = field(default=None, compare=False)  # its first events, signed as they came

    def record(self) -> store_pb.TrajectoryRecord:
        return store_pb.TrajectoryRecord(
            request=self.request,
            model_id=self.model_id,
            model_revision=self.revision,
            events=self.events,
            lesson_entry_id=self.lesson_entry,
        )

    def trajectory_id(self) -> str:
        return trajectory_id(self.request, self.model_id, self.revision)

    def packed(self, secret: bytes) -> bytes:
        """`pack(self.record(), secret)` to the byte, made from each event's own bytes.

        Protobuf writes a message's fields in number order and a repeated message as each
        element's bytes behind its tag and length, so the record is the bytes of its fields
        1-3, each event's, then field 5; they are signed as they come (the digest lets go of
        the interpreter's lock while it reads megabytes) and joined once, inside the stored
        message's own fields. Never copying megabytes into new message objects, this costs
        a few milliseconds where `pack` costs 10 to 25 (tests/unit/test_trajectory_store_packing.py).
        The events `signed_so_far` already signed (the same objects, under the same secret) are
        not read again for the signature: only the rest, usually the picture.
        """
        parts = [_head(self.request, self.model_id, self.revision)]
        for event in self.events:
            parts += _event_parts(event)
        parts.append(store_pb.TrajectoryRecord(lesson_entry_id=self.lesson_entry).SerializeToString())
        head = (self.request, self.model_id, self.revision)
        covered = None if self.signed_so_far is None else self.signed_so_far.covering(secret, head, self.events)
        if covered is None:
            signature, unsigned = hmac.new(secret, digestmod=hashlib.sha256), parts
        else:
            signature, unsigned = covered[1], parts[1 + 3 * covered[0] :]
        for part in unsigned:
            signature.update(part)
        stored = store_pb.StoredTrajectory(format_version=FORMAT_VERSION).SerializeToString()
        signed = store_pb.StoredTrajectory(hmac_sha256=signature.digest()).SerializeToString()
        return b"".join([stored, _PAYLOAD_TAG, varint(sum(map(len, parts))), *parts, signed])


@dataclass
class CacheStats:
    writes: int = 0
    errors: int = 0
    dropped: int = 0


class TrajectoryStore:
    """Redis-backed storage of finished trajectories, tolerant of Redis being away."""

    def __init__(
        self,
        url: str | None,
        ad_hoc_ttl_s: int,
        secret: bytes,
        retry_after_s: float = 2.0,
        on_availability: Callable[[bool, str], None] | None = None,
    ) -> None:
        self.secret = secret  # signs what is stored; entries signed otherwise are never served
        self.ad_hoc_ttl_s = ad_hoc_ttl_s
        self.retry_after_s = retry_after_s
        self.stats = CacheStats()
        self._on_availability = on_availability
        # A connection Redis closed (it restarted) is opened again once, at once, for any command or pipeline.
        self._client = (
            redis.Redis.from_url(
                url,
                socket_timeout=2,
                socket_connect_timeout=1,
                retry=Retry(NoBackoff(), 1),
                retry_on_error=[RedisConnectionError],
            )
            if url
            else None
        )
        self.available = self._client is not None
        self.status = "" if url else "No cache is configured (CLASSROOM_REDIS_URL is empty)."
        self._retry_at = 0.0
        # Finished trajectories are packed and written here (`_write`), with a blocking client of their
        # own: the event loop never copies or sends their megabytes. Two: one signs while the other writes.
        self._packer = ThreadPoolExecutor(max_workers=PACKERS, thread_name_prefix="trajectory-packer")
        self._writer = (
            BlockingRedis.from_url(
                url,
                socket_timeout=2,
                socket_connect_timeout=1,
                retry=BlockingRetry(NoBackoff(), 1),
                retry_on_error=[RedisConnectionError],
            )
            if url
            else None
        )

    @property
    def configured(self) -> bool:
        """Whether the service has a Redis at all (False: this process is the whole service, memory its store)."""
        return self._client is not None

    async def close(self) -> None:
        self._packer.shutdown(wait=False)
        if self._writer is not None:
            self._writer.close()
        if self._client is not None:
            await self._client.aclose()

    # -- availability -------------------------------------------------------

    def _usable(self) -> bool:
        return self._client is not None and (self.available or time.monotonic() >= self._retry_at)

    def _succeeded(self) -> None:
        if not self.available:
            log.warning("cache: Redis is reachable again; caching resumes")
            self._set_available(True, "")

    def _failed(self, error: Exception) -> None:
        self.stats.errors += 1
        self._retry_at = time.monotonic() + self.retry_after_s
        if self.available:
            log.warning("cache: Redis unreachable (%s); generating uncached until it returns", error)
            self._set_available(False, f"The trajectory cache (Redis) cannot be reached: {error}")

    def _set_available(self, available: bool, status: str) -> None:
        self.available, self.status = available, status
        if self._on_availability is not None:
            self._on_availability(available, status)

    async def run(self, operation: Callable[[redis.Redis], Awaitable[T]]) -> T | None:
        """One Redis operation under the store's rule: None, and noted, when Redis is away or fails."""
        if not self._usable():
            return None
        try:
            result = await operation(self._client)
        except RedisError as error:
            self._failed(error)
            return None
        self._succeeded()
        return result

    # -- signatures ----------------------------------------------------------

    def sign(self, *parts: bytes) -> bytes:
        """The cache secret's signature (`mac`, as a stored trajectory's) over `parts`, each length-prefixed."""
        return mac(self.secret, b"".join(len(part).to_bytes(8, "big") + part for part in parts))

    def signed(self, signature: bytes, *parts: bytes) -> bool:
        """Whether `signature` is this server's over `parts` (what another replica relayed through Redis)."""
        return hmac.compare_digest(self.sign(*parts), signature)

    # -- operations ----------------------------------------------------------

    async def load(self, trajectory: str) -> tuple[store_pb.TrajectoryRecord, Namespace] | None:
        """The stored trajectory (lesson namespace first), or None. Bad entries are deleted."""
        if not self._usable():
            return None
        keys = [redis_key(namespace, trajectory) for namespace in Namespace]
        try:
            values = await self._client.mget(keys)
            self._succeeded()
            return await self._first_good(trajectory, values)
        except RedisError as error:
            self._failed(error)
        return None

    async def find_or_claim(
        self, trajectory: str, lease: Lease, takeover: bool = False
    ) -> tuple[tuple[store_pb.TrajectoryRecord, Namespace] | None, bool | None]:
        """The stored trajectory, or else a claim to compute it, in one round trip (`lease.FIND_OR_CLAIM`).

        Returns (stored or None, claimed): claimed is True when this replica now holds the
        lease, False when another replica computes the trajectory, None when Redis cannot
        be asked (then nobody can claim it: compute it here). A bad entry is deleted, and
        then claimed on its own. A `takeover` keeps the trajectory's live stream going.
        """
        if not self._usable():
            return None, None
        try:
            lesson, ad_hoc, claimed = await self._client.eval(
                FIND_OR_CLAIM,
                5,
                *find_or_claim_keys(trajectory),
                lease.owner,
                lease.lease_ms,
                int(not takeover),
                lease.watch_ms,
            )
            self._succeeded()
            if not lesson and not ad_hoc:
                return None, bool(claimed)
            found = await self._first_good(trajectory, [lesson or None, ad_hoc or None])
        except RedisError as error:
            self._failed(error)
            return None, None
        if found is not None:
            return found, False
        return await self.find_or_claim(trajectory, lease, takeover)  # every entry was bad, and is gone now

    async def _first_good(
        self, trajectory: str, values: list[bytes | None]
    ) -> tuple[store_pb.TrajectoryRecord, Namespace] | None:
        """The first of the stored entries (lesson, ad hoc) that passes its checks; bad ones are deleted."""
        for namespace, value in zip(Namespace, values, strict=True):
            if value is None:
                continue
            key = redis_key(namespace, trajectory)
            try:
                record = unpack(value, self.secret)
                if record_id(record) != trajectory:
                    raise CorruptTrajectory("stored under another request's key")
            except CorruptTrajectory as problem:
                log.warning("cache: dropping %s (%s); it will be computed again", key, problem)
                self.stats.dropped += 1
                await self._client.delete(key)
                continue
            return record, namespace
        return None

    async def save(self, record: store_pb.TrajectoryRecord | RecordParts, namespace: Namespace) -> bool:
        """Store a finished trajectory; ad-hoc entries expire, lesson entries never do.

        It is packed, signed and written on the store's threads (`_write`; a record given as
        `RecordParts` is made there too): the event loop goes on meanwhile.
        """
        if not self._usable():
            return False
        ttl = self.ad_hoc_ttl_s if namespace is Namespace.AD_HOC else None
        try:
            await asyncio.get_running_loop().run_in_executor(self._packer, self._write, record, namespace, ttl)
            self._succeeded()
        except RedisError as error:
            self._failed(error)
            return False
        self.stats.writes += 1
        return True

    def _write(self, record: store_pb.TrajectoryRecord | RecordParts, namespace: Namespace, ttl: int | None) -> None:
        """Pack a record (`pack`'s bytes) and write it under its key: work for the store's threads."""
        assert self._writer is not None  # (`save` asks only when Redis is configured)
        if isinstance(record, RecordParts):
            key, value = redis_key(namespace, record.trajectory_id()), record.packed(self.secret)
        else:
            key, value = redis_key(namespace, record_id(record)), pack(record, self.secret)
        self._writer.set(key, value, ex=ttl)

    async def states(self, trajectories: list[str]) -> list[int]:
        """The CacheState of each trajectory, in one round trip."""
        if not self._usable():
            return [pb.CACHE_STATE_UNKNOWN] * len(trajectories)
        try:
            pipeline = self._client.pipeline(transaction=False)
            for trajectory in trajectories:
                pipeline.exists(redis_key(Namespace.LESSON, trajectory))
                pipeline.exists(redis_key(Namespace.AD_HOC, trajectory))
            found = await pipeline.execute()
            self._succeeded()
        except RedisError as error:
            self._failed(error)
            return [pb.CACHE_STATE_UNKNOWN] * len(trajectories)
        states = []
        for lesson, ad_hoc in zip(found[::2], found[1::2], strict=True):
            states.append(
                pb.CACHE_STATE_LESSON if lesson else pb.CACHE_STATE_AD_HOC if ad_hoc else pb.CACHE_STATE_NOT_CACHED
            )
        return states
