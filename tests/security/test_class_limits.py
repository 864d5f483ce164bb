"""Limits a student cannot get around, and a Redis outage that shuts new pictures but not lessons.

Refusals feed nothing, a resume ticket works once, and with Redis away generation
fails closed while lessons open and sharing says why. Real gRPC servers on
loopback and real Redis servers, one stopped mid-test.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import grpc
import pytest

from services.common.api import ADDRESS_METADATA, LESSON_METADATA, RESUME_METADATA, STUDENT_METADATA, pb, unbatch
from services.common.client import ClassroomClient, ClientSettings, StudentError
from services.inference.trajectories.lease import lease_key
from tests.frontend.conftest import LESSON_CATALOG
from tests.integration.helpers import collect, request
from tests.support.redis_server import RedisServer
from tests.support.servers import ServerThread, running_server, stub_for

CODE = "owl-42"


def picture(prompt: str, steps: int = 2, seed: int = 5) -> pb.GenerateRequest:
    return request(prompt, seed=seed, num_inference_steps=steps, width=64, height=64)


def refused(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    """Poll a condition (never a fixed sleep); fail with `what` when it does not come."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def idle(server: ServerThread, redis_server: RedisServer) -> Callable[[], bool]:
    """Nothing runs, and no claim is left in Redis.

    A claim the service is still giving up after a cancel would make the same request, sent
    again, follow that claim (a join) instead of computing it.
    """
    claims = redis_server.client()

    def no_work() -> bool:
        stats = server.call(server.classroom.scheduler.stats)
        idle_here = stats.active_generations == 0 and stats.queued_generations == 0
        return idle_here and not claims.keys(lease_key("*"))

    return no_work


@pytest.fixture(scope="module")
def limited(settings, tmp_path_factory) -> Iterator[tuple[ServerThread, RedisServer]]:
    """One token a student (a new one every two minutes: none during a test), its own Redis."""
    redis_server = RedisServer(tmp_path_factory.mktemp("limits-redis")).start()
    update = {"rate_limit_per_minute": 0.5, "rate_limit_burst": 1, "redis_url": redis_server.url}
    try:
        with running_server(settings.model_copy(update=update)) as server:
            yield server, redis_server
    finally:
        redis_server.stop()


# -- refusals feed nothing ------------------------------------------------------------


def test_refused_requests_do_not_make_a_crowd(limited):
    server, _ = limited
    channel, stub = stub_for(server.address)
    mine = ((STUDENT_METADATA, "crowd-maker"),)
    assert collect(stub.Generate(picture("the one allowed"), metadata=mine)).final
    before = server.call(lambda: list(server.classroom.crowd._arrivals))
    for attempt in range(20):
        error = refused(lambda attempt=attempt: collect(stub.Generate(picture(f"again {attempt}"), metadata=mine)))
        assert "faster than the class allows" in error.details()
    # Twenty refusals within a second would have been a crowd, holding every cached replay of the class.
    assert server.call(lambda: list(server.classroom.crowd._arrivals)) == before
    assert server.call(server.classroom.crowd.left_s) == 0
    channel.close()


# -- a resume ticket is used once --------------------------------------------------------


def test_a_resume_ticket_runs_its_request_again_once(limited):
    server, redis_server = limited
    channel, stub = stub_for(server.address)
    mine = ((STUDENT_METADATA, "resumer"),)
    long = picture("a very long walk", steps=150, seed=11)

    def start(ticket: bytes = b"") -> tuple[grpc.Call, pb.StreamStatus]:
        metadata = (*mine, (RESUME_METADATA, ticket)) if ticket else mine
        call = stub.Generate(long, metadata=metadata)
        status = next(unbatch(call)).status
        return call, status

    call, status = start()  # the student's one token
    ticket = status.resume_ticket
    call.cancel()
    wait_for(idle(server, redis_server), "the cancelled picture did not leave")
    # The stream was lost (a restart, a cut network): the ticket sends it again, not charged.
    call, again = start(ticket)
    assert again.source == pb.TRAJECTORY_SOURCE_COMPUTED
    call.cancel()
    wait_for(idle(server, redis_server), "the resumed picture did not leave")
    # Once only: the same ticket, or the one the resumed stream gave, is charged like any request.
    for used in (ticket, again.resume_ticket):
        error = refused(lambda used=used: start(used))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "faster than the class allows" in error.details()
    channel.close()


def test_a_resume_ticket_refused_for_another_reason_still_works(limited):
    server, redis_server = limited
    channel, stub = stub_for(server.address)
    here = (ADDRESS_METADATA, "10.0.0.9")
    mine = ((STUDENT_METADATA, "patient"), here)
    long = picture("a long patient walk", steps=150, seed=12)
    call = stub.Generate(long, metadata=mine)  # the student's one token
    ticket = next(unbatch(call)).status.resume_ticket
    call.cancel()
    wait_for(idle(server, redis_server), "the cancelled picture did not leave")
    server.call(lambda: server.classroom.pause(True))  # what is asked for waits
    others = []
    for name in ("one", "two", "three"):  # classmates at the same computer take its three places
        other = stub.Generate(picture(f"a long {name}", steps=150), metadata=((STUDENT_METADATA, name), here))
        next(unbatch(other))
        others.append(other)
    error = refused(lambda: next(unbatch(stub.Generate(long, metadata=(*mine, (RESUME_METADATA, ticket))))))
    assert "network address already has 3 pictures" in error.details()
    for other in others:
        other.cancel()
    server.call(lambda: server.classroom.pause(False))
    wait_for(idle(server, redis_server), "the classmates' pictures did not leave")
    call = stub.Generate(long, metadata=(*mine, (RESUME_METADATA, ticket)))
    assert next(unbatch(call)).status.source == pb.TRAJECTORY_SOURCE_COMPUTED  # still free: it bought nothing before
    call.cancel()
    wait_for(idle(server, redis_server), "the resumed picture did not leave")
    channel.close()


# -- Redis away: generation shuts, lessons open, the gallery says why -------------------------


def test_with_redis_away_generation_fails_closed_and_lessons_still_open(settings, fresh_redis):
    redis_server = fresh_redis("going away")
    update = {"rate_limit_per_minute": 6, "rate_limit_burst": 1, "redis_url": redis_server.url,
              "catalog": LESSON_CATALOG, "teacher_code": CODE}  # fmt: skip
    with running_server(settings.model_copy(update=update)) as server:
        channel, stub = stub_for(server.address)
        front_end = ClassroomClient(ClientSettings(inference_addr=server.address), class_name="7B")
        mine = ((STUDENT_METADATA, "outage"),)
        kept = collect(stub.Generate(picture("before the outage"), metadata=mine))  # the one token
        redis_server.kill()
        # Today's bucket was refilled by the outage: three more pictures, one after another.
        for attempt in range(3):
            error = refused(lambda attempt=attempt: collect(stub.Generate(picture(f"in the outage {attempt}"),
                                                                            metadata=mine)))  # fmt: skip
            assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, error
            assert "Lessons still open" in error.details()
        fresh = refused(lambda: collect(stub.Generate(picture("a new student"), metadata=((STUDENT_METADATA, "n"),))))
        assert fresh.code() == grpc.StatusCode.FAILED_PRECONDITION  # a full bucket is no way round it either
        # The resume ticket cannot be checked as unused: charged, so refused too.
        resumed = ((STUDENT_METADATA, "outage"), (RESUME_METADATA, kept.status.resume_ticket))
        assert refused(lambda: collect(stub.Generate(picture("before the outage", seed=6), metadata=resumed)))
        # A picture this service already holds, and a lesson, still open.
        assert collect(stub.Generate(picture("before the outage"), metadata=mine)).status.cache_hit
        entry = stub.ListLessons(pb.ListLessonsRequest(collection="prompt-pairs")).entries[0]
        lesson = collect(stub.Generate(entry.request, metadata=(*mine, (LESSON_METADATA, entry.id))))
        assert lesson.final.image.data
        # Sharing says the gallery is away, not that the picture is gone.
        with pytest.raises(StudentError, match="not available right now") as caught:
            front_end.share_to_gallery(kept.status.trajectory_key, "outage", "Olu")
        assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION
        # Redis back: the limits hold again (a new student gets their token).
        redis_server.start()
        wait_for(lambda: _generates(stub, "back again"), "generation did not come back with Redis")
        front_end.close()
        channel.close()


def _generates(stub, student: str) -> bool:
    try:
        return bool(collect(stub.Generate(picture("after", seed=9), metadata=((STUDENT_METADATA, student),))).final)
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, error
        return False
