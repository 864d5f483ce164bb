"""A class's shared state, kept in Redis so that every replica serves one class: signed records and change notices.

Present mode and the open quick check (`Together`) and the roster (`classroom/roster.py`)
are small records, one per class and part, read and changed here. A change is one
optimistic Redis transaction (WATCH the record, read it, decide in Python, MULTI/EXEC),
so two replicas changing a class at once never lose either change: the loser reads
again and decides again. A change that others wait for bumps the part's version and
publishes the class on one channel; every replica listens on it (`listen`) and wakes
its `WatchClass` streams.

Keys, for a class (its name's digest, so any name makes a plain key):

    dc:class:<digest>:<part>          the record: a signature, then the payload   (one per part)
    dc:class:<digest>:<part>:marks    one mark per student, set once (quick-check answers)
    dc:class:<digest>:<part>:version  grows with every change of the part
    dc:classes                        the classes with recent changes (for the teacher's roster)
    channel dc:class-changed          "<digest>:<part>" after every change with a version

Only the service writes them: students reach them only through the API, which checks
who asks (the token, the teacher code, the roster). Each record and mark is signed with
the cache secret over its class, part and field, so a value written by someone else with
the Redis password, or copied from another class, reads as none. Every key expires
`CLASS_TTL_S` after its class's last change: a class's state does not live forever.

Without Redis this process is the whole service and keeps the records itself. With Redis
configured but away, a change made with `away="refuse"` raises ClassStateUnavailable (a
teacher's act, an answer: made once, for everyone); with `away="local"` it is made on this
process's last-known copy (a sign-in, so lessons keep opening), and Redis is the truth
again once it is back. Reads then answer the last-known copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

import redis.asyncio as redis
from redis.exceptions import RedisError, WatchError

from services.common.trajectories import KEY_PREFIX
from services.inference.refusals import ClassStateUnavailable
from services.inference.trajectories.cache import TrajectoryStore

log = logging.getLogger(__name__)
R = TypeVar("R")

CLASS_TTL_S = 12 * 3600  # a school day after the last change, a class's shared state is gone
CHANNEL = f"{KEY_PREFIX}:class-changed"
CLASSES = f"{KEY_PREFIX}:classes"
MAC_BYTES = hashlib.sha256().digest_size
LOCAL_KEPT = 4096  # records whose last-known copy a replica keeps (for Redis's absences)


def class_digest(classroom: str) -> str:
    """A class name as a plain key part (any spaces or script)."""
    return hashlib.sha256(classroom.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Snapshot:
    """A record as read: its part's version, its payload (None: none yet) and its marks, all verified."""

    version: int
    value: bytes | None
    marks: dict[str, bytes] = field(default_factory=dict)


@dataclass
class Change(Generic[R]):
    """What a change decided: its result, the record's new payload (None: unchanged), and the marks to set."""

    result: R
    value: bytes | None = None
    mark: tuple[str, bytes] | None = None  # (student, value): set only if the student has none yet
    clear_marks: bool = False


@dataclass
class _Local:
    """A record as this process knows it: the truth without Redis, the last-known copy while Redis is away."""

    version: int = 0
    value: bytes | None = None
    marks: dict[str, bytes] = field(default_factory=dict)


class ClassRecords:
    """Each class's records, in Redis through the store's connection (or in this process without Redis)."""

    def __init__(self, store: TrajectoryStore, ttl_s: int = CLASS_TTL_S, recheck_s: float = 5.0) -> None:
        self.store, self.ttl_s, self.recheck_s = store, ttl_s, recheck_s
        self._local: dict[tuple[str, str], _Local] = {}
        self._listeners: list[Callable[[str, str], None]] = []  # called with (digest, part) after a change
        self._listening: asyncio.Task[None] | None = None
        self._stopped = False

    # -- keys and signatures ---------------------------------------------------------

    def _key(self, classroom: str, part: str, suffix: str = "") -> str:
        return f"{KEY_PREFIX}:class:{class_digest(classroom)}:{part}{suffix}"

    def _mac(self, *parts: str | bytes) -> bytes:
        message = b"\0".join(p.encode() if isinstance(p, str) else p for p in parts)
        return hmac.new(self.store.secret, message, hashlib.sha256).digest()

    def _seal(self, classroom: str, part: str, name: str, payload: bytes) -> bytes:
        return self._mac("class record", classroom, part, name, payload) + payload

    def _open(self, classroom: str, part: str, name: str, value: bytes | None) -> bytes | None:
        """The payload of a stored value signed for this class, part and name; None when it is not."""
        if value is None or len(value) < MAC_BYTES:
            return None
        payload = value[MAC_BYTES:]
        if not hmac.compare_digest(value[:MAC_BYTES], self._mac("class record", classroom, part, name, payload)):
            log.warning("class state: a %s value not signed by this service was ignored", part)
            return None
        return payload

    # -- reading ---------------------------------------------------------------------

    async def read(self, classroom: str, part: str, marks: bool = False) -> Snapshot:
        """The record now (Redis's, or the last-known copy while Redis is away)."""
        key = self._key(classroom, part)

        async def fetch(client: redis.Redis) -> tuple[list, dict]:
            pipe = client.pipeline(transaction=False)
            pipe.get(key)
            pipe.get(key + ":version")
            if marks:
                pipe.hgetall(key + ":marks")
            found = await pipe.execute()
            return found[:2], found[2] if marks else {}

        answer = await self.store.run(fetch) if self.store.configured else None
        if answer is None:
            local = self._local.get((classroom, part), _Local())
            return Snapshot(local.version, local.value, dict(local.marks))
        (value, version), stored = answer
        return self._remember(classroom, part, int(version or 0), value, stored)

    def _remember(self, classroom: str, part: str, version: int, value: bytes | None, marks: dict) -> Snapshot:
        opened = {
            student.decode(errors="replace"): payload
            for student, mark in marks.items()
            if (payload := self._open(classroom, part, "mark:" + student.decode(errors="replace"), mark)) is not None
        }
        snapshot = Snapshot(version, self._open(classroom, part, "", value), opened)
        self._local.pop((classroom, part), None)  # re-inserted: the dict's order is the oldest used first
        self._local[classroom, part] = _Local(version, snapshot.value, dict(opened))
        if len(self._local) > LOCAL_KEPT and self.store.configured:  # Redis holds them all; keep the recent
            del self._local[next(iter(self._local))]
        return snapshot

    async def classes(self) -> list[str]:
        """The classes with a change within the last `ttl_s` (this process's own without Redis)."""
        since = time.time() - self.ttl_s
        found = (
            await self.store.run(lambda r: r.zrangebyscore(CLASSES, since, "+inf")) if self.store.configured else None
        )
        if found is None:
            return sorted({classroom for classroom, _ in self._local})
        return [name.decode(errors="replace") for name in found]

    async def read_many(self, classrooms: list[str], part: str) -> list[bytes | None]:
        """Several classes' records of one part, in one round trip (last-known copies while Redis is away)."""
        keys = [self._key(classroom, part) for classroom in classrooms]
        values = await self.store.run(lambda r: r.mget(keys)) if self.store.configured and keys else None
        if values is None:
            return [self._local.get((c, part), _Local()).value for c in classrooms]
        return [self._open(c, part, "", v) for c, v in zip(classrooms, values, strict=True)]

    # -- changing ----------------------------------------------------------------------

    async def change(
        self,
        classroom: str,
        part: str,
        decide: Callable[[Snapshot], Change[R]],
        away: Literal["refuse", "local"],
        notify: bool = True,
    ) -> tuple[R, bool]:
        """Apply `decide` to the record as it is now: (its result, whether its mark was set).

        `decide` may raise a Refusal (nothing is written); it may run more than once when
        another replica changes the record meanwhile, so it must only compute.
        """
        if self.store.configured:
            done = await self.store.run(lambda client: self._change_in_redis(client, classroom, part, decide, notify))
            if done is not None:
                return done
            if away == "refuse":
                raise ClassStateUnavailable()
        return self._change_here(classroom, part, decide, notify)

    async def _change_in_redis(
        self, client: redis.Redis, classroom: str, part: str, decide: Callable[[Snapshot], Change[R]], notify: bool
    ) -> tuple[R, bool]:
        key = self._key(classroom, part)
        marks_key, version_key = key + ":marks", key + ":version"
        async with client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    # Only the record is watched: answers (marks) set at once do not make each other retry,
                    # while a new question or a reveal does (then the answer is decided again, on it).
                    await pipe.watch(key)
                    value, version, marks = await pipe.get(key), await pipe.get(version_key), {}
                    if await pipe.exists(marks_key):
                        marks = await pipe.hgetall(marks_key)
                    before = self._remember(classroom, part, int(version or 0), value, marks)
                    change = decide(before)
                    now = time.time()
                    pipe.multi()
                    queued: list[str] = []  # what each queued command is, to find its answer
                    if change.value is not None:
                        pipe.set(key, self._seal(classroom, part, "", change.value), ex=self.ttl_s)
                    else:
                        pipe.expire(key, self.ttl_s)
                    queued.append("record")
                    if change.clear_marks:
                        pipe.delete(marks_key)
                        queued.append("clear")
                    if change.mark is not None:
                        student, mark = change.mark
                        pipe.hsetnx(marks_key, student, self._seal(classroom, part, "mark:" + student, mark))
                        pipe.expire(marks_key, self.ttl_s)
                        queued += ["mark", "expire"]
                    if notify:
                        # Starts at the clock's milliseconds: a Redis that lost its data still counts up.
                        pipe.set(version_key, int(now * 1000), nx=True, ex=self.ttl_s)
                        pipe.incr(version_key)
                        pipe.expire(version_key, self.ttl_s)
                        pipe.publish(CHANNEL, f"{class_digest(classroom)}:{part}")
                        queued += ["start", "version", "expire", "publish"]
                    pipe.zadd(CLASSES, {classroom: now})
                    pipe.zremrangebyscore(CLASSES, "-inf", now - self.ttl_s)
                    pipe.expire(CLASSES, self.ttl_s)
                    results = dict(zip(queued, await pipe.execute(), strict=False))
                    break
                except WatchError:  # another replica changed the class meanwhile: read and decide again
                    continue
        marked = bool(results.get("mark"))
        local = self._local[classroom, part]  # as `_remember` left it: update it to what was written
        local.version = int(results.get("version", local.version))
        local.value = change.value if change.value is not None else local.value
        if change.clear_marks:
            local.marks = {}
        if marked and change.mark is not None:
            local.marks[change.mark[0]] = change.mark[1]
        return change.result, marked

    def _change_here(
        self, classroom: str, part: str, decide: Callable[[Snapshot], Change[R]], notify: bool
    ) -> tuple[R, bool]:
        local = self._local.setdefault((classroom, part), _Local())
        change = decide(Snapshot(local.version, local.value, dict(local.marks)))
        if change.value is not None:
            local.value = change.value
        if change.clear_marks:
            local.marks = {}
        marked = False
        if change.mark is not None and change.mark[0] not in local.marks:
            local.marks[change.mark[0]] = change.mark[1]
            marked = True
        if notify:
            local.version = max(local.version + 1, int(time.time() * 1000))
            self._tell(class_digest(classroom), part)
        return change.result, marked

    # -- change notices ----------------------------------------------------------------

    def listen(self, listener: Callable[[str, str], None]) -> None:
        """Call `listener(digest, part)` after every change of any class, from any replica (within milliseconds).

        A notice can be lost (Redis restarting, a dropped connection, published between two
        connections): on every (re)subscription, and every `recheck_s` in any case, the listener
        hears ("", "") — anything may have changed — so what it keeps (a removal that stops
        pictures) is rechecked. A listener that raises is logged; the others still hear.
        """
        self._listeners.append(listener)

    def start(self) -> None:
        """Listen to other replicas' notices (on the running loop): once, and again if the listening ended."""
        if self.store.configured and not self._stopped and (self._listening is None or self._listening.done()):
            if self._listening is not None and not self._listening.cancelled() and self._listening.exception():
                log.error("class state: change notices stopped (%r); listening again", self._listening.exception())
            self._listening = asyncio.get_running_loop().create_task(self._listen())

    def stop(self) -> None:
        """The service is stopping: listen no more (`start` no longer starts it)."""
        self._stopped = True
        if self._listening is not None:
            self._listening.cancel()

    def _tell(self, digest: str, part: str) -> None:
        for listener in self._listeners:
            try:
                listener(digest, part)
            except Exception:  # one listener's fault must not silence the others, nor the listening
                log.exception("class state: a change listener failed on %s:%s", digest or "*", part or "*")

    async def _listen(self) -> None:
        """One pub/sub connection per replica: a notice wakes this replica's watchers of that class.

        redis-py reconnects and subscribes again inside `get_message` (the store's retry), without
        an error: the subscription's confirmation, heard here, is what says notices may have been
        missed. A recheck ("", "") every `recheck_s` covers a notice lost anyhow else.
        """

        async def subscribe(client: redis.Redis) -> redis.client.PubSub:
            pubsub = client.pubsub(ignore_subscribe_messages=False)
            await pubsub.subscribe(CHANNEL)
            return pubsub

        while True:
            pubsub = await self.store.run(subscribe)
            if pubsub is None:
                await asyncio.sleep(self.store.retry_after_s)
                continue
            recheck_at = time.monotonic() + self.recheck_s
            try:
                while True:
                    message = await pubsub.get_message(timeout=max(0.0, recheck_at - time.monotonic()))
                    kind = message.get("type") if message is not None else None
                    if kind == "subscribe" or time.monotonic() >= recheck_at:  # (re)subscribed, or time to recheck
                        recheck_at = time.monotonic() + self.recheck_s
                        self._tell("", "")
                    elif kind == "message":
                        digest, _, part = message["data"].decode(errors="replace").partition(":")
                        self._tell(digest, part)
            except (RedisError, OSError) as error:
                log.warning("class state: change notices lost (%s); listening again", error)
                await asyncio.sleep(self.store.retry_after_s)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
