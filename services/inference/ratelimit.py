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
from redis.exceptions import RedisError

from services.common.trajectories import FORMAT_VERSION, KEY_PREFIX

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


class RateLimited(Exception):
    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"try again in {retry_after_s:.0f} s")
        self.retry_after_s = retry_after_s


class RateLimiter:
    """A Redis token bucket per student; does nothing when per_minute is 0 or there is no Redis."""

    def __init__(self, url: str | None, per_minute: float, burst: int) -> None:
        self.rate = per_minute / 60.0
        self.burst = burst
        enabled = bool(url) and per_minute > 0 and burst > 0
        self._client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1) if enabled else None
        self._script = self._client.register_script(_TAKE) if self._client is not None else None

    async def take(self, student: str) -> None:
        """Take a token for a generation, or raise RateLimited."""
        if self._script is None:
            return
        key = f"{KEY_PREFIX}:v{FORMAT_VERSION}:ratelimit:{student}"
        try:
            allowed, wait = await self._script(keys=[key], args=[time.time(), self.burst, self.rate])
        except RedisError as error:
            log.debug("rate limit not checked (Redis unreachable: %s)", error)
            return
        if not int(allowed):
            raise RateLimited(float(wait))

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
