"""Per-student rate limits, kept in Redis so every inference process shares them: a token bucket.

Each student has a bucket of `burst` tokens that refills at `per_minute` tokens a
minute. A generation the model must compute takes one token; one served from
the cache or joining a running one takes none. An empty bucket refuses the
request and says when the next token arrives. With Redis away the limit is not
enforced (students keep working; the cache's health entry says Redis is away).
"""

from __future__ import annotations

import logging
import time

import redis.asyncio as redis

from services.common.trajectories import rate_limit_key
from services.inference.cache import TrajectoryStore
from services.inference.refusals import RateLimited

log = logging.getLogger(__name__)

# KEYS[1]: the bucket. ARGV: now (s), capacity, refill per second.
# Returns {allowed (0/1), seconds until the next token (when refused)}.
_TAKE = """
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local capacity, rate, now = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[1])
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'at', now)
redis.call('EXPIRE', KEYS[1], math.ceil(capacity / rate) + 60)
if allowed == 1 then return {1, '0'} end
return {0, tostring((1 - tokens) / rate)}
"""


class RateLimiter:
    """A Redis token bucket per student, through the trajectory store's connection and failure rule.

    Does nothing when per_minute is 0 or there is no Redis.
    """

    def __init__(self, store: TrajectoryStore, per_minute: float, burst: int) -> None:
        self.store = store
        self.rate = per_minute / 60.0
        self.burst = burst
        self.enabled = per_minute > 0 and burst > 0

    async def take(self, student: str) -> None:
        """Take a token for a generation, or raise RateLimited."""
        if not self.enabled:
            return

        async def take_token(client: redis.Redis) -> list:
            return await client.eval(_TAKE, 1, rate_limit_key(student), time.time(), self.burst, self.rate)

        answer = await self.store.run(take_token)
        if answer is None:
            log.debug("rate limit not checked (Redis unreachable)")
            return
        allowed, wait = answer
        if not int(allowed):
            raise RateLimited(float(wait))
