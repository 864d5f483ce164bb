"""Per-student rate limits, kept in Redis so every inference process shares them: token buckets.

Each student has a bucket of `burst` tokens that refills at `per_minute` tokens a
minute. A generation the model must compute takes one token; one served from
the cache or joining a running one takes none, and so does a request the queue
refuses (its token is given back). An empty bucket refuses the request and says
when the next token arrives. Buckets are named: "generate" for pictures, "text"
for Tokenize and EncodePrompt (cheaper, with a larger allowance).

When Redis is configured but away, a limiter made `fail_closed` (pictures) refuses
every take with a sentence (LimitsUnavailable): a bucket kept here would start full,
so an outage would hand every student a fresh burst on every replica. The text
limiter falls back to a bucket in this process (text calls are cheap). Without
Redis at all, this process is the whole service, and its buckets are the limit.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import redis.asyncio as redis

from services.common.trajectories import rate_limit_key
from services.inference.refusals import LimitsUnavailable, RateLimited
from services.inference.trajectories.cache import TrajectoryStore

log = logging.getLogger(__name__)

# KEYS[1]: the bucket. ARGV: now (s), capacity, refill per second, tokens to add (-1 takes one, +1 gives back).
# Returns {allowed (0/1), seconds until the next token (when refused)}.
_CHANGE = """
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local capacity, rate, now = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[1])
local change = tonumber(ARGV[4])
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
local allowed = 1
if change < 0 and tokens < 1 then
  allowed = 0
else
  tokens = math.min(capacity, tokens + change)
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'at', now)
redis.call('EXPIRE', KEYS[1], math.ceil((capacity - math.min(tokens, 0)) / rate) + 60)
if allowed == 1 then return {1, '0'} end
return {0, tostring((1 - tokens) / rate)}
"""


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """Token buckets per student, in Redis (through the store's connection and failure rule), else here."""

    def __init__(
        self, store: TrajectoryStore, per_minute: float, burst: int, bucket: str = "generate", fail_closed: bool = True
    ) -> None:
        self.store = store
        self.fail_closed = fail_closed
        self.rate = per_minute / 60.0
        self.burst = burst
        self.bucket = bucket
        self.enabled = per_minute > 0 and burst > 0
        self._local: dict[str, _Bucket] = {}  # while Redis is away

    async def take(self, student: str, tokens: int = 1) -> None:
        """Take `tokens` (a request's price in standard pictures), or raise RateLimited.

        A student with at least one token is let in, and a costly request leaves the bucket
        in debt: the next one waits until the debt is paid off at the usual rate (a request
        priced at 20 standard pictures, at 6 a minute, waits about 3 minutes). So a large
        picture stays possible, and costs its time.
        """
        allowed, wait = await self._change(student, -max(1, tokens))
        if not allowed:
            raise RateLimited(wait)

    async def give_back(self, student: str, tokens: int = 1) -> None:
        """Return the tokens taken for a request that was then refused."""
        await self._change(student, max(1, tokens))

    async def _change(self, student: str, change: int) -> tuple[bool, float]:
        if not self.enabled:
            return True, 0.0
        key = rate_limit_key(f"{self.bucket}:{student}")
        now = time.time()

        async def change_tokens(client: redis.Redis) -> list:
            return await client.eval(_CHANGE, 1, key, now, self.burst, self.rate, change)

        answer = await self.store.run(change_tokens)
        if answer is None:
            if self.store.configured and self.fail_closed:
                if change < 0:
                    raise LimitsUnavailable()
                return True, 0.0  # nothing was taken here, so nothing is given back
            return self._change_here(student, change, now)
        allowed, wait = answer
        return bool(int(allowed)), float(wait)

    def _change_here(self, student: str, change: int, now: float) -> tuple[bool, float]:
        """The same bucket, in this process: without Redis, or (text) while it cannot be reached."""
        bucket = self._local.setdefault(student, _Bucket(float(self.burst), now))
        bucket.tokens = min(self.burst, bucket.tokens + max(0.0, now - bucket.at) * self.rate)
        bucket.at = now
        if change < 0 and bucket.tokens < 1:
            return False, (1 - bucket.tokens) / self.rate
        bucket.tokens = min(self.burst, bucket.tokens + change)
        if len(self._local) > 10_000:  # students long gone: their buckets are full again anyway
            full_again_s = {s: (self.burst - min(b.tokens, 0.0)) / self.rate for s, b in self._local.items()}
            self._local = {s: b for s, b in self._local.items() if now - b.at < full_again_s[s]}
        return True, 0.0
