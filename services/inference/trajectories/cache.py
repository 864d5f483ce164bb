"""Finished trajectories in Redis: the lesson namespace (kept) and the ad-hoc one (evictable).

The cache is an optimisation, never a dependency: when Redis cannot be reached
every operation quietly does nothing, the service generates uncached, and the
next attempt after a short pause finds Redis again without a restart.

A finished trajectory is megabytes (every probe of every step): its stored form is
made, signed (`RecordParts.packed`) and written on the store's own threads, never on
the event loop, so that every other reader's frames keep going while a class's pictures
are stored. A trajectory computed here is staged as it runs (`staging`): its events go
to Redis while the model works, and storing it at the end writes only its last bytes.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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
    CorruptTrajectory,
    Namespace,
    mac,
    pack,
    record_id,
    redis_key,
    unpack,
)
from services.inference.trajectories.lease import FIND_OR_CLAIM, Lease, find_or_claim_keys
from services.inference.trajectories.record import RecordParts, SignedSoFar
from services.inference.trajectories.staging import Stager

log = logging.getLogger(__name__)
T = TypeVar("T")

PACKERS = 2  # threads that pack and write finished trajectories


@dataclass
class CacheStats:
    writes: int = 0
    staged: int = 0  # of the writes: stored from the bytes staged as they came (staging.py)
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
        # Running trajectories' events are staged on its thread as they come, and stored there at their end.
        self._stager = Stager(self._writer, retry_after_s) if self._writer is not None else None

    @property
    def configured(self) -> bool:
        """Whether the service has a Redis at all (False: this process is the whole service, memory its store)."""
        return self._client is not None

    async def close(self) -> None:
        self._packer.shutdown(wait=False)
        if self._stager is not None:
            self._stager.thread.shutdown(wait=False, cancel_futures=True)  # (what was staged expires)
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
        # A staged one on the staging thread, after its staged writes (`Staging.finish`).
        stager = self._stager if isinstance(record, RecordParts) and record.staging is not None else None
        thread = stager.thread if stager is not None else self._packer
        try:
            staged = await asyncio.get_running_loop().run_in_executor(thread, self._write, record, namespace, ttl)
            self._succeeded()
        except RedisError as error:
            self._failed(error)
            return False
        self.stats.writes += 1
        self.stats.staged += staged
        return True

    def _write(self, record: store_pb.TrajectoryRecord | RecordParts, namespace: Namespace, ttl: int | None) -> bool:
        """Pack a record (`pack`'s bytes) and write it under its key: work for the store's threads. True: staged."""
        assert self._writer is not None  # (`save` asks only when Redis is configured)
        if isinstance(record, RecordParts):
            key = redis_key(namespace, record.trajectory_id())
            if record.staged(self.secret, key, ttl):
                return True
            value = record.packed(self.secret)
        else:
            key, value = redis_key(namespace, record_id(record)), pack(record, self.secret)
        self._writer.set(key, value, ex=ttl)
        return False

    def signing(self, request: pb.GenerateRequest, model_id: str, revision: str) -> SignedSoFar:
        """A new computation's running signature, staging its events in Redis (staging.py) when Redis is there."""
        staging = self._stager is not None and self._usable() and not self._stager.paused
        return SignedSoFar(self.secret, request, model_id, revision, self._stager if staging else None)

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
