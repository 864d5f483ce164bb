"""Resume tickets: after a lost stream, a student may ask for the same trajectory again once, free."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

import redis.asyncio as redis

from services.common.trajectories import KEY_PREFIX
from services.inference.diffusion.jobs import Requester
from services.inference.trajectories.cache import TrajectoryStore

# A resume ticket runs its request once more, free, within this long of being given: a restart of the
# service and the model's loading (minutes for SD 1.5) fit well within it.
RESUME_TICKET_S = 15 * 60


class ResumeTickets:
    """Gives signed tickets and honours each once per student and request, across replicas (in Redis)."""

    def __init__(self, store: TrajectoryStore) -> None:
        self.store = store
        # Signed with the cache secret (they outlive a restart), or a secret of this process's
        # own when there is none (an empty key would let anyone write a ticket).
        self._secret = store.secret or secrets.token_bytes(32)
        self._used_tickets: dict[str, float] = {}  # without Redis: tickets used, until when the mark lasts

    def give(self, who: Requester, key: str) -> bytes:
        """What lets this student ask for this trajectory again, after a lost stream, without being charged.

        The time it was given, then a signature over the student, the request and that time:
        good for RESUME_TICKET_S, and for one free run (`use`).
        """
        issued = int(time.time())
        return issued.to_bytes(8, "big") + self._signature(who.student, key, issued)

    def _signature(self, student: str, key: str, issued: int) -> bytes:
        message = f"resume\0{student}\0{key}\0{issued}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).digest()

    async def use(self, ticket: bytes, who: Requester, key: str) -> bool:
        """Whether a resume ticket runs this request free now: this student's and request's, fresh, and unused.

        Once per student and request (not per ticket: every stream of the request gives one), marked
        in Redis so every replica and a restarted service agree; with Redis configured but away, no
        ticket is honoured (the request is charged like any other).
        """
        if len(ticket) != 8 + hashlib.sha256().digest_size:
            return False
        issued = int.from_bytes(ticket[:8], "big")
        if not 0 <= time.time() - issued <= RESUME_TICKET_S:
            return False
        if not hmac.compare_digest(ticket[8:], self._signature(who.student, key, issued)):
            return False
        used = self._mark(who, key)
        if not self.store.configured:  # this process is the whole service: it keeps the marks itself
            now = time.monotonic()
            self._used_tickets = {u: t for u, t in self._used_tickets.items() if t > now}
            if used in self._used_tickets:
                return False
            self._used_tickets[used] = now + RESUME_TICKET_S
            return True

        async def mark(client: redis.Redis) -> bool:
            return bool(await client.set(used, b"1", nx=True, ex=RESUME_TICKET_S))

        return bool(await self.store.run(mark))

    def _mark(self, who: Requester, key: str) -> str:
        return f"{KEY_PREFIX}:resume-used:" + hashlib.sha256(f"{who.student}\0{key}".encode()).hexdigest()[:32]

    async def give_back(self, who: Requester, key: str) -> None:
        """A ticket whose request was refused for another reason (busy, queue full) bought nothing: it works again."""
        used = self._mark(who, key)
        self._used_tickets.pop(used, None)
        await self.store.run(lambda client: client.delete(used))
