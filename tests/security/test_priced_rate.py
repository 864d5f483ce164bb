"""A costly picture costs its price in the student's rate limit, not one token like a standard picture.

Before, the limiter took one token per request whatever it asked for, so a student
could send the largest request the server admits (24 standard pictures of work)
as often as a standard one. Now a request takes its price in standard pictures:
a student with a token is let in, and the bucket is left in debt that the usual
rate pays off. Real gRPC server on loopback, real Redis; the limiter also alone,
in memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import grpc
import pytest

from services.common.api import STUDENT_METADATA
from services.inference.classroom.ratelimit import RateLimiter
from services.inference.refusals import RateLimited
from services.inference.trajectories.cache import TrajectoryStore
from tests.integration.helpers import collect, request
from tests.support.redis_server import RedisServer
from tests.support.servers import ServerThread, running_server, stub_for

BURST, PER_MINUTE = 3, 0.5  # no refill worth a token within a test


@pytest.fixture(scope="module")
def priced(settings, tmp_path_factory) -> Iterator[ServerThread]:
    redis_server = RedisServer(tmp_path_factory.mktemp("priced-redis")).start()
    # A standard picture of one step (at tiny's 512 px, about a second of this CPU), so prices stay cheap to pay.
    update = {"rate_limit_per_minute": PER_MINUTE, "rate_limit_burst": BURST, "redis_url": redis_server.url,
              "default_steps": 1}  # fmt: skip
    try:
        with running_server(settings.model_copy(update=update)) as server:
            yield server
    finally:
        redis_server.stop()


def at_native_size(server: ServerThread, prompt: str, steps: int, seed: int = 3) -> object:
    """A picture at the model's own size (tiny: 512 px) with the default probes: `steps` standard pictures."""
    size = server.classroom.model.default_size
    return request(prompt, seed=seed, num_inference_steps=steps, width=size, height=size)


def refused_for_rate(stub, message, student: str) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        collect(stub.Generate(message, metadata=((STUDENT_METADATA, student),)))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, caught.value.details()
    assert "faster than the class allows" in caught.value.details()
    return caught.value


def test_a_costly_picture_uses_up_the_allowance_a_standard_one_does_not(priced):
    channel, stub = stub_for(priced.address)
    assert priced.settings.default_steps == 1
    # Four standard pictures of work (4 steps at the native size): let in with a full bucket of 3...
    costly = ((STUDENT_METADATA, "costly"),)
    assert collect(stub.Generate(at_native_size(priced, "a long walk", 4), metadata=costly)).final
    # ...and the next picture waits: 3 - 4 leaves the bucket in debt (the old limiter had taken 1 of 3).
    refused_for_rate(stub, at_native_size(priced, "a short hop", 1), "costly")
    # A classmate making standard pictures gets the whole burst, one token each.
    for seed in range(BURST):
        message = at_native_size(priced, "a short hop", 1, seed=seed)
        assert collect(stub.Generate(message, metadata=((STUDENT_METADATA, "steady"),))).final
    refused_for_rate(stub, at_native_size(priced, "one more", 1), "steady")
    channel.close()


@pytest.mark.parametrize("with_redis", [False, True], ids=["in memory", "in Redis"])
def test_the_debt_is_paid_off_at_the_usual_rate_and_a_refusal_gives_the_price_back(with_redis, tmp_path):
    redis_server = RedisServer(tmp_path).start() if with_redis else None
    try:
        store = TrajectoryStore(redis_server.url if redis_server else None, ad_hoc_ttl_s=60, secret=b"s" * 32)
        limiter = RateLimiter(store, per_minute=6, burst=BURST)

        async def run() -> float:
            await limiter.take("ada", 20)  # let in with a full bucket: 3 - 20 = -17
            with pytest.raises(RateLimited) as waiting:
                await limiter.take("ada")
            await limiter.give_back("ada", 20)  # the scheduler refused it after all: the price comes back
            await limiter.take("ada")
            return waiting.value.retry_after_s

        wait = asyncio.run(run())
        # 18 tokens short of one, at 6 a minute: about 180 s (the clock moved a little meanwhile).
        assert 175 <= wait <= 180, wait
    finally:
        if redis_server:
            redis_server.stop()
