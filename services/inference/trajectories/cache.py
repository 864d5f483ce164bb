"""Finished trajectories in Redis: the lesson namespace (kept) and the ad-hoc one (evictable).

The cache is an optimisation, never a dependency: when Redis cannot be reached
every operation quietly does nothing, the service generates uncached, and the
next attempt after a short pause finds Redis again without a restart.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from services.common.api import pb, store_pb
from services.common.trajectories import CorruptTrajectory, Namespace, mac, pack, record_id, redis_key, unpack
from services.inference.trajectories.lease import FIND_OR_CLAIM, Lease, find_or_claim_keys

log = logging.getLogger(__name__)
T = TypeVar("T")


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

    @property
    def configured(self) -> bool:
        """Whether the service has a Redis at all (False: this process is the whole service, memory its store)."""
        return self._client is not None

    async def close(self) -> None:
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

    async def save(self, record: store_pb.TrajectoryRecord, namespace: Namespace) -> bool:
        """Store a finished trajectory; ad-hoc entries expire, lesson entries never do."""
        if not self._usable():
            return False
        key = redis_key(namespace, record_id(record))
        ttl = self.ad_hoc_ttl_s if namespace is Namespace.AD_HOC else None
        try:
            await self._client.set(key, pack(record, self.secret), ex=ttl)
            self._succeeded()
        except RedisError as error:
            self._failed(error)
            return False
        self.stats.writes += 1
        return True

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
