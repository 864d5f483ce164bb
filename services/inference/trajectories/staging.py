"""A running trajectory's stored bytes written to Redis as its events come, so that storing it is a rename.

A finished trajectory is megabytes (every probe of every step, 4.66 MB at 512 px and 25
steps). Written whole when its picture is made, a class's trajectories all go at the end
of their generations at once: 64 of them are 300 MB that Redis reads and the service sends
in the moments when the class waits for its last pictures. Staged, each event's bytes go to
a key of their own (`staging_key`) on the store's staging thread as soon as the event is
signed (`record.SignedSoFar`), while the model works on the next step; storing the trajectory
then writes its first and last few bytes around them and renames the key (`FINISH`), one
small command.

The staged key holds the stored value (`pack`'s bytes) with its beginning left blank: the
beginning holds the payload's length, which is known only at the end. How many bytes that
length takes (a varint: 3 below 2 MB, 4 below 256 MB) is chosen from the first step's size
(`varint_width`), and staging is left off when the estimate is near a boundary; when the
end proves the choice wrong, or a write failed, or the key is not as long as what was
written to it (Redis restarted, evicted it), the trajectory is written whole, as without
staging. So what is stored is always `pack`'s bytes (tests/unit/test_trajectory_staging.py).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from redis import Redis as BlockingRedis
from redis.exceptions import RedisError

from services.common.trajectories import FORMAT_VERSION, KEY_PREFIX

log = logging.getLogger(__name__)

STAGED_TTL_S = 3600  # a staged trajectory whose generation never ends leaves Redis within the hour

# KEYS: the staged key. ARGV: the bytes, how long the key is before them (0: it is new), where they go, the
# new key's time to live. A key that is not as long as what was written to it (lost to a restart or evicted,
# or a write sent twice) is never written again, nor made anew without its time to live: 0, and it is given up.
WRITE = """
if redis.call('STRLEN', KEYS[1]) ~= tonumber(ARGV[2]) then return 0 end
redis.call('SETRANGE', KEYS[1], ARGV[3], ARGV[1])
if ARGV[2] == '0' then redis.call('EXPIRE', KEYS[1], ARGV[4]) end
return 1
"""

# KEYS: the staged key, the trajectory's key. ARGV: the value's beginning, its end, how long the staged
# key must be (its blank beginning and every event), the key's time to live in seconds (-1: kept for good).
FINISH = """
if redis.call('STRLEN', KEYS[1]) ~= tonumber(ARGV[3]) then return 0 end
redis.call('SETRANGE', KEYS[1], 0, ARGV[1])
redis.call('APPEND', KEYS[1], ARGV[2])
redis.call('RENAME', KEYS[1], KEYS[2])
if tonumber(ARGV[4]) >= 0 then redis.call('EXPIRE', KEYS[2], ARGV[4]) else redis.call('PERSIST', KEYS[2]) end
return 1
"""


def staging_key(trajectory: str) -> str:
    """A staged copy of `trajectory`'s value, one per computation (two replicas never write the same one)."""
    return f"{KEY_PREFIX}:v{FORMAT_VERSION}:staging:{trajectory}:{uuid.uuid4().hex}"


def varint_width(value: int) -> int:
    """How many bytes the varint of `value` takes (7 bits each)."""
    return max(1, (value.bit_length() + 6) // 7)


class Stager:
    """The store's one staging thread and its Redis client; after a write fails, staging pauses a while.

    A Redis that hangs makes each write wait out its timeout: paused, the staged writes queued
    behind it give up at once, and new trajectories are not staged, until `pause_s` has passed.
    """

    def __init__(self, writer: BlockingRedis, pause_s: float) -> None:
        self.writer, self.pause_s = writer, pause_s
        self.write, self.finish = writer.register_script(WRITE), writer.register_script(FINISH)
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trajectory-stager")
        self._paused_until = 0.0

    def submit(self, work: Callable[..., None], *args: object) -> None:
        """Queue `work` on the staging thread; nothing once the store is closed (what was staged expires)."""
        with contextlib.suppress(RuntimeError):  # (shut down)
            self.thread.submit(work, *args)

    @property
    def paused(self) -> bool:
        return time.monotonic() < self._paused_until

    def failed(self, key: str, error: Exception) -> None:
        log.info("cache: staging %s failed (%s); it will be written whole", key, error)
        self._paused_until = time.monotonic() + self.pause_s


class Staging:
    """One computation's staged value: its events' bytes, written in order on the store's staging thread.

    `add` is called with each event's bytes in the trajectory's order (under `SignedSoFar`'s lock);
    the first event's are held until the second's give an estimate of the whole payload, from
    which the blank beginning's size is chosen. `finish` runs on the same thread, after every write.
    """

    def __init__(self, stager: Stager, trajectory: str, fixed: int, head: bytes, events: int) -> None:
        self.stager = stager
        self.key = staging_key(trajectory)
        self.fixed = fixed  # the stored value's bytes before the payload's length
        self.head = head  # the record's fields 1-3, the payload's first bytes
        self.events = events  # how many the trajectory will have (header, steps, picture): for the estimate
        self.blank = 0  # the staged key's blank beginning (`fixed`, the length's varint, `head`); 0 until chosen
        self.added = 0  # events handed over
        self.written = 0  # bytes written after the blank beginning, or to be
        self.failed = False  # a write failed, or staging was left off: the trajectory is written whole
        self.finished = False
        self._held: list[bytes] = []  # the first event's bytes, until the blank's size is chosen
        self._lock = threading.Lock()

    def add(self, data: bytes) -> None:
        """An event's bytes (its tag, length and message), the next in the trajectory's order."""
        with self._lock:
            self.added += 1
            if self.failed or self.finished:
                return
            self._held.append(data)
            first = self.blank == 0
            if first:
                if self.added < 2:
                    return
                estimate = len(self.head) + len(self._held[0]) + (self.events - 1) * len(data)
                if varint_width(estimate * 2 // 3) != varint_width(estimate * 3 // 2):
                    self.failed = True  # near a boundary: written whole at the end
                    self._held = []
                    return
                self.blank = self.fixed + varint_width(estimate) + len(self.head)
            held, self._held = b"".join(self._held), []
            offset = self.blank + self.written
            self.written += len(held)
            # (queued under the lock: a `drop` after this add deletes the key after this write, never before)
            self.stager.submit(self._write, held, 0 if first else offset, offset)

    def _write(self, data: bytes, length: int, offset: int) -> None:
        """The staging thread's write of `data` at `offset` into the key `length` bytes long (`WRITE`)."""
        if self.failed or self.stager.paused:
            self.failed = True
            return
        try:
            written = self.stager.write(keys=[self.key], args=[data, length, offset, STAGED_TTL_S])
        except RedisError as error:
            written = 0
            self.stager.failed(self.key, error)
        if not written:
            self.failed = True  # (the key, if any, is deleted when the trajectory is stored or dropped)

    def finish(self, destination: str, beginning: bytes, end: bytes, covered: int, ttl: int | None) -> bool:
        """On the staging thread: the staged value completed and renamed to `destination`; False if it cannot be.

        `beginning` must fill the blank exactly (the length's varint as wide as chosen), the staged
        events must be the value's first `covered`, and the key as long as what was written to it;
        `end` is the rest of the value. A False leaves nothing under `destination`, to be written
        whole. Redis failing here raises, as a whole write would (the staged key then expires).
        """
        with self._lock:
            usable = not self.failed and not self.finished and self.added == covered and not self._held
            self.finished = True
        if usable and self.blank and len(beginning) == self.blank:
            args = [beginning, end, self.blank + self.written, -1 if ttl is None else ttl]
            if self.stager.finish(keys=[self.key, destination], args=args):
                return True
        self._delete()
        return False

    def drop(self) -> None:
        """Forget the staged value: the trajectory was not stored (stopped, failed, or its picture flagged)."""
        with self._lock:
            if not self.finished:
                self.finished = True
                self.stager.submit(self._delete)

    def _delete(self) -> None:
        if self.stager.paused:
            return  # (it expires: STAGED_TTL_S; no write made it anew)
        try:
            self.stager.writer.delete(self.key)
        except RedisError as error:
            self.stager.failed(self.key, error)
