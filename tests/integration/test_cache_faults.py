"""Redis going away and coming back: generation never fails, caching resumes without a restart."""

import time

from grpc_health.v1 import health_pb2
from redis import Redis

from services.common.api import SERVICE_NAME, pb
from services.inference.server import CACHE_HEALTH_NAME
from tests.integration.helpers import collect, request
from tests.support.redis_server import RedisServer
from tests.support.servers import health_status, running_server, stub_for

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def staged_keys(server: RedisServer) -> list[bytes]:
    with Redis.from_url(server.url) as client:
        return client.keys("*:staging:*")


def stats(stub):
    return stub.GetServerStats(pb.GetServerStatsRequest())


def test_redis_killed_then_restarted(settings, tmp_path):
    redis_server = RedisServer(tmp_path / "redis").start()
    faulty = settings.model_copy(update={"redis_url": redis_server.url, "cache_retry_s": 0.2})
    try:
        with running_server(faulty) as server:
            channel, stub = stub_for(server.address)
            lesson = request("a tram in the rain", seed=201, num_inference_steps=3, width=64, height=64)
            cached = collect(stub.Generate(lesson))
            assert stats(stub).cache_writes == 1 and health_status(channel, CACHE_HEALTH_NAME) == SERVING
            # Staged in Redis as it ran (staging.py), and stored from there: nothing staged is left.
            assert stats(stub).cache_writes_staged == 1 and not staged_keys(redis_server)

            redis_server.kill()
            for seed in (202, 203, 204):  # students keep generating, uncached
                stream = collect(stub.Generate(request("a tram in the snow", seed=seed, width=64, height=64,
                                                       num_inference_steps=3)))  # fmt: skip
                assert stream.final.image.data
            down = stats(stub)
            assert not down.cache_available and "cannot be reached" in down.cache_status
            assert down.cache_errors >= 1 and down.generations_failed == 0
            assert health_status(channel, CACHE_HEALTH_NAME) == NOT_SERVING
            assert health_status(channel, SERVICE_NAME) == SERVING  # the service itself is fine
            again = collect(stub.Generate(lesson))  # what was served before still is
            assert again.status.cache_hit and again.final == cached.final
            listing = stub.ListLessons(pb.ListLessonsRequest())
            assert not listing.cache_available
            assert {e.cache_state for e in listing.entries} == {pb.CACHE_STATE_UNKNOWN}

            redis_server.start()
            time.sleep(0.3)  # past the retry pause: the next request tries Redis again
            fresh = request("a tram at dawn", seed=205, num_inference_steps=3, width=64, height=64)
            collect(stub.Generate(fresh))
            up = stats(stub)
            assert up.cache_available and up.cache_status == ""
            assert up.cache_writes == down.cache_writes + 1
            assert up.cache_writes_staged == 2 and not staged_keys(redis_server)
            assert health_status(channel, CACHE_HEALTH_NAME) == SERVING
            with running_server(faulty) as other:  # another replica, with no copy in memory
                other_channel, other_stub = stub_for(other.address)
                assert collect(other_stub.Generate(fresh)).status.cache_hit  # read back from the restarted Redis
                other_channel.close()
            channel.close()
    finally:
        redis_server.stop()


def test_without_any_cache_configured_everything_is_computed(settings):
    with running_server(settings.model_copy(update={"redis_url": ""})) as server:
        channel, stub = stub_for(server.address)
        spec = request("a fern", seed=206, num_inference_steps=2, width=64, height=64)
        collect(stub.Generate(spec))
        info = stats(stub)
        assert not info.cache_available and "CLASSROOM_REDIS_URL" in info.cache_status
        assert info.cache_errors == 0
        channel.close()
