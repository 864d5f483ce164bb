"""The claim on a running trajectory in Redis, so that replicas on one Redis compute it once.

A replica about to compute a trajectory claims it: a lease key holding the replica's
owner id, set only if absent and expiring after `lease_s` (SET NX PX). The cache
lookup and the claim are one script, so a trajectory is either stored, claimed or
claimed now by the asker: there is no moment where a finished trajectory is neither
(its owner stores it before letting go of the claim). A replica that finds the claim
taken says it watches (a flag beside the lease). While it computes, the owner renews
the lease (only while it still holds it) each `renew_every_s`, and learns in the same
round trip whether anyone watches: from then on it writes every event to a capped
stream per trajectory (`live_key`), read by the watching replicas' readers
(`relay.py`). Alone, a replica so pays one round trip a second per running picture,
not one a step. If the owner dies, the lease expires and a replica whose readers
still wait claims it and takes the job over.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field

from services.common.trajectories import FORMAT_VERSION, KEY_PREFIX, Namespace, redis_key

# KEYS: the trajectory's lesson and ad-hoc cache entries, its lease, its live stream, its watch flag.
# ARGV: owner id, lease in ms, '1' for a new computation (a stream and flag left by an earlier one,
# say a flagged picture's, which is never stored, are dropped) or '0' for a takeover (readers
# elsewhere are half way through it), how long a watch flag lasts in ms.
# Returns {lesson entry, ad-hoc entry, claimed}: the entries ('' when absent), and 1 when the lease is
# now the caller's (nothing stored, nobody computing), else 0: stored, or another replica computes it
# (and then the caller watches it).
FIND_OR_CLAIM = """
local lesson, ad_hoc = redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2])
if lesson or ad_hoc then return {lesson or '', ad_hoc or '', 0} end
if redis.call('SET', KEYS[3], ARGV[1], 'NX', 'PX', ARGV[2]) then
  if ARGV[3] == '1' then redis.call('DEL', KEYS[4], KEYS[5]) end
  return {'', '', 1}
end
redis.call('SET', KEYS[5], '1', 'PX', ARGV[4])
return {'', '', 0}
"""
# KEYS: a lease, its watch flag. ARGV: owner id, lease in ms. Extends the lease only while the caller
# still holds it. Returns {renewed (1/0), watched (1/0)}.
RENEW = """
local renewed = 0
if redis.call('GET', KEYS[1]) == ARGV[1] then renewed = redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return {renewed, redis.call('EXISTS', KEYS[2])}
"""
# KEYS[1]: a lease. ARGV[1]: owner id. Lets go of it only if the caller holds it.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def lease_key(trajectory: str) -> str:
    """Who computes this trajectory now (an owner id), while it runs."""
    return f"{KEY_PREFIX}:v{FORMAT_VERSION}:lease:{trajectory}"


def live_key(trajectory: str) -> str:
    """The stream of a running trajectory's events, for readers on other replicas."""
    return f"{KEY_PREFIX}:v{FORMAT_VERSION}:live:{trajectory}"


def watch_key(trajectory: str) -> str:
    """Set while a replica other than the owner has readers waiting for this trajectory."""
    return f"{KEY_PREFIX}:v{FORMAT_VERSION}:watch:{trajectory}"


def find_or_claim_keys(trajectory: str) -> list[str]:
    cached = [redis_key(namespace, trajectory) for namespace in Namespace]
    return [*cached, lease_key(trajectory), live_key(trajectory), watch_key(trajectory)]


def _owner_id() -> str:
    """Who this process is among the replicas: host, process and a random part (a restarted pod may reuse a pid)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Lease:
    """The terms of this replica's claims: its owner id, and how long a claim outlives a silent owner."""

    lease_s: float = 3.0
    owner: str = field(default_factory=_owner_id)

    @property
    def lease_ms(self) -> int:
        return int(self.lease_s * 1000)

    @property
    def renew_every_s(self) -> float:
        """Renewed three times per lease: two renewals may be lost before another replica takes over."""
        return self.lease_s / 3

    @property
    def watch_ms(self) -> int:
        """A watch flag lasts this long; watchers set it again at each quiet poll, owners keep what they saw."""
        return 10 * self.lease_ms

    @property
    def poll_ms(self) -> int:
        """How long a reader on another replica waits for the next event before it checks the owner is alive."""
        return max(100, min(1000, self.lease_ms // 3))
