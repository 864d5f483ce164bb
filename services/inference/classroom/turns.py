"""One picture at a time per student, across every replica: a student's turn is a lease in Redis.

Each replica's queue already holds one generation per student (`diffusion/work_queue.py`).
With several replicas behind round-robin, a student's next call may reach another
replica; so before the model is put to work, the Classroom takes the student's turn
here, `SET NX` on `dc:turn:<digest of the student id>` with a lease of `LEASE_S`, renewed
while the picture runs and given back when it ends. A replica that dies stops renewing:
its students' turns come free within `LEASE_S`.

The key is written only by the service (students reach it only through the API, which
takes the student id the front end asserts); a value set by someone else with the
Redis password can at most hold a student's turn until it expires. Without Redis, or
while it is away, the replica's own queue is the rule: refusing new pictures while Redis
is away is the rate limiter's (when limits are on it does, with a sentence), and
lessons, which take no turn, keep opening.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time

import redis.asyncio as redis

from services.common.trajectories import KEY_PREFIX
from services.inference.refusals import StudentBusy
from services.inference.trajectories.cache import TrajectoryStore
from services.inference.trajectories.log import Trajectory

log = logging.getLogger(__name__)

LEASE_S = 15.0  # a dead replica's students wait at most this long for their next picture
RENEW_S = LEASE_S / 3

# KEYS[1]: the turn. ARGV[1]: the holder's token; ARGV[2]: the lease in ms ("0": give back).
_IF_HELD = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '0' then return redis.call('DEL', KEYS[1]) end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""


def _key(student: str) -> str:
    return f"{KEY_PREFIX}:turn:" + hashlib.sha256(student.encode()).hexdigest()[:32]


class StudentTurns:
    """The turns this replica holds, renewed together by one task."""

    def __init__(self, store: TrajectoryStore, lease_s: float = LEASE_S) -> None:
        self.store, self.lease_ms = store, int(lease_s * 1000)
        # student -> (token, the picture it is for, when it was taken)
        self._held: dict[str, tuple[str, Trajectory | None, float]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._renewing: asyncio.Task[None] | None = None

    async def take(self, student: str) -> bool:
        """Take the student's turn (StudentBusy when another replica holds it); False: no turn is needed here."""
        if not self.store.configured:
            return False
        token = secrets.token_hex(8)

        async def claim(client: redis.Redis) -> bool:
            return bool(await client.set(_key(student), token, nx=True, px=self.lease_ms))

        taken = await self.store.run(claim)
        if taken is None:  # Redis is away: this replica's own queue is the rule (the rate limiter, when on, refuses)
            return False
        if not taken:
            raise StudentBusy()
        self._held[student] = (token, None, time.monotonic())
        if self._renewing is None or self._renewing.done():
            self._renewing = asyncio.get_running_loop().create_task(self._renew())
        return True

    def hold_for(self, student: str, trajectory: Trajectory) -> None:
        """The turn is the picture's now: it is given back when the picture ends, however it ends."""
        if student not in self._held:
            return
        self._held[student] = (self._held[student][0], trajectory, self._held[student][2])
        task = asyncio.get_running_loop().create_task(self._when_ended(student, trajectory))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _when_ended(self, student: str, trajectory: Trajectory) -> None:
        with contextlib.suppress(Exception):  # failed, stopped or cancelled: ended all the same
            await trajectory.wait()
        await self.give_back(student, trajectory)

    async def picture_ended(self, trajectory: Trajectory) -> None:
        """The picture is computed: give its turn back now, before its stream's last message goes out.

        Otherwise a student's next request, sent the moment the picture arrives and taken by
        round robin to another replica, could find the turn still held ("You already have a
        picture being made") for the Redis round trip `_when_ended` is still making.
        """
        if not trajectory.made:
            return
        for student, (_, held, _) in list(self._held.items()):
            if held is trajectory:
                await self.give_back(student, trajectory)

    async def give_back(self, student: str, trajectory: Trajectory | None = None) -> None:
        """The student's picture ended (or was refused before it began): their turn is free on every replica."""
        held = self._held.get(student)
        if held is None or (trajectory is not None and held[1] is not trajectory):
            return
        del self._held[student]
        await self.store.run(lambda r: self._if_held(r, student, held[0], 0))

    async def _if_held(self, client: redis.Redis, student: str, token: str, lease_ms: int) -> int:
        return int(await client.eval(_IF_HELD, 1, _key(student), token, lease_ms))

    async def _renew(self) -> None:
        while self._held:
            await asyncio.sleep(RENEW_S)
            for student, (token, trajectory, taken) in list(self._held.items()):
                job = trajectory.job if trajectory is not None else None
                if trajectory is not None and (trajectory.finished or (job is not None and job.cancelled.is_set())):
                    await self.give_back(student, trajectory)  # (a stopped picture's log may never finish)
                    continue
                if trajectory is None and time.monotonic() - taken > 2 * RENEW_S:
                    await self.give_back(student)  # taken for work no stream follows here (a takeover): not kept
                    continue
                renewed = await self.store.run(lambda r, s=student, t=token: self._if_held(r, s, t, self.lease_ms))
                if renewed == 0 and self._held.get(student, ("",))[0] == token:  # lapsed while Redis was away
                    del self._held[student]

    async def close(self) -> None:
        """The replica stops: give back every turn it holds (one round trip), then stop renewing.

        Otherwise a drained replica's students would be told "You already have a picture being
        made" on every other replica until their leases ran out (up to `LEASE_S`).
        """
        held, self._held = list(self._held.items()), {}
        if held:

            async def give_all_back(client: redis.Redis) -> list:
                pipe = client.pipeline(transaction=False)
                for student, (token, _, _) in held:
                    pipe.eval(_IF_HELD, 1, _key(student), token, 0)
                return await pipe.execute()

            await self.store.run(give_all_back)
        for task in [self._renewing, *self._tasks]:
            if task is not None:
                task.cancel()
