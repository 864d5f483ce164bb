"""One computation per trajectory across replicas: two real replicas (Shapes) on one real Redis.

The same new request sent to both at once is computed once: the replicas' step
counters (GetServerStats.denoising_steps) add up to one picture's steps, and both
streams carry every frame and the same picture. A replica killed (SIGKILL) while it
computes: the other one, whose reader follows the computation through Redis, takes
the job over when the dead replica's claim expires, its stream still ends with the
picture, and the student's rate limit was charged once. A reader leaving the
computing replica: the same, at once. A student whose name the teacher removes:
only their stream hears it, and a classmate following the same picture on the
other replica has it taken over there.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Iterator

import pytest

from services.common.api import STUDENT_METADATA, bearer, pb, unbatch
from services.common.client import StudentError
from services.common.shapes_judge import judge
from services.common.trajectories import Namespace, rate_limit_key, redis_key
from services.inference.trajectories.lease import lease_key
from tests.integration.helpers import Stream, collect, request
from tests.support.replicas import API_TOKEN, TEACHER_CODE, Replicas, running_replicas
from tests.support.servers import stub_for

STEPS = 25  # the default: a standard picture at 64 px
LONG = 100  # Shapes' most: a run long enough to be killed in the middle of
BURST = 50  # tokens: the test's few pictures never run a student dry
A, B = 0, 1


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    # A rate limit that refills slowly enough (one token in 100 minutes) that each charge shows;
    # claims that outlive a dead replica by 1 s (3 s by default), to keep the test short.
    with running_replicas(
        tmp_path_factory.mktemp("flight"),
        CLASSROOM_RATE_LIMIT_PER_MINUTE="0.01",
        CLASSROOM_RATE_LIMIT_BURST=str(BURST),
        CLASSROOM_FLIGHT_LEASE_S="1",
    ) as running:
        yield running


def generate(replicas: Replicas, index: int, spec: pb.GenerateRequest, student: str) -> Iterator[pb.GenerateResponse]:
    """A Generate stream straight from one replica (no reconnecting client: a dead replica's stream just ends)."""
    channel, stub = stub_for(replicas.addresses[index])
    metadata = (*bearer(API_TOKEN), (STUDENT_METADATA, student))
    try:
        yield from unbatch(stub.Generate(spec, metadata=metadata))
    finally:
        channel.close()


def steps_done(replicas: Replicas, index: int) -> int:
    channel, stub = stub_for(replicas.addresses[index])
    with channel:
        return stub.GetServerStats(pb.GetServerStatsRequest(), metadata=bearer(API_TOKEN)).denoising_steps


def tokens_left(replicas: Replicas, student: str) -> float:
    with replicas.redis.client() as client:
        return float(client.hget(rate_limit_key(f"generate:{student}"), "tokens"))


def test_the_same_request_sent_to_both_replicas_is_computed_once(replicas):
    spec = request("a red circle on the left", seed=11, num_inference_steps=STEPS)
    before = steps_done(replicas, A) + steps_done(replicas, B)
    streams: dict[int, Stream] = {}
    both = threading.Barrier(2)

    def student(index: int) -> None:
        both.wait(30)
        streams[index] = collect(generate(replicas, index, spec, f"student-{index}"))

    readers = [threading.Thread(target=student, args=(index,)) for index in (A, B)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join(120)
    assert set(streams) == {A, B}, replicas.log(A) + replicas.log(B)

    assert steps_done(replicas, A) + steps_done(replicas, B) == before + STEPS  # one computation, not two
    sources = sorted(stream.status.source for stream in streams.values())
    assert sources == sorted([pb.TRAJECTORY_SOURCE_COMPUTED, pb.TRAJECTORY_SOURCE_JOINED])
    for stream in streams.values():
        assert [frame.step_index for frame in stream.frames] == list(range(STEPS))  # every frame, live
    assert streams[A].final.image.data == streams[B].final.image.data  # the same picture
    assert judge(streams[A].image).colour == "red"


def test_a_finished_stream_means_stored_and_no_longer_claimed(replicas):
    stream = collect(generate(replicas, A, request("a yellow star at the top", seed=15), "dee"))
    key = stream.status.trajectory_key
    with replicas.redis.client() as client:
        assert client.exists(redis_key(Namespace.AD_HOC, key)) and not client.exists(lease_key(key))
    # So the same request asked of B at once is B's to read from the cache, not to follow.
    assert collect(generate(replicas, B, request("a yellow star at the top", seed=15), "dee")).status.cache_hit


def test_a_reader_leaving_the_computing_replica_leaves_the_picture_to_the_other(replicas):
    spec = request("a green triangle in the middle", seed=14, num_inference_steps=LONG)
    on_a = generate(replicas, A, spec, "cy")  # A computes it
    assert next(on_a).status.source == pb.TRAJECTORY_SOURCE_COMPUTED
    on_b = generate(replicas, B, spec, "cy")  # B follows it
    status = next(on_b)
    assert status.status.source == pb.TRAJECTORY_SOURCE_JOINED
    b_started = steps_done(replicas, B)
    on_a.close()  # the tab on A is closed: A stops, and says so; B's reader takes the work over at once
    stream = collect(iter([status, *on_b]))
    assert [frame.step_index for frame in stream.frames] == list(range(LONG))
    assert judge(stream.image).colour == "green"
    assert steps_done(replicas, B) == b_started + LONG


def test_a_removed_students_sentence_reaches_only_that_student(replicas):
    a, b = replicas.client(A, "flight-remove"), replicas.client(B, "flight-remove")
    spec = request("a red square at the bottom", seed=16, num_inference_steps=STEPS)
    a.set_paused(TEACHER_CODE, True)  # Finn's picture waits on A: it is surely still there when his name goes
    try:
        finn = a.generate(spec, "s-finn", name="Finn")
        finn_opening = next(finn)
        assert finn_opening.status.source == pb.TRAJECTORY_SOURCE_COMPUTED
        gus = b.generate(spec, "s-gus", name="Gus")  # his classmate asks for the same picture on B
        opening = next(gus)
        assert opening.status.source == pb.TRAJECTORY_SOURCE_JOINED
        b.remove_student(TEACHER_CODE, "flight-remove", "Finn")
        ended: queue.Queue[BaseException | None] = queue.Queue()

        def read_on() -> None:  # on a thread: a picture that is not stopped waits for the teacher
            try:
                collect(itertools.chain([finn_opening], finn))
                ended.put(None)
            except BaseException as error:
                ended.put(error)

        threading.Thread(target=read_on, daemon=True).start()
        error = ended.get(timeout=60)
        assert isinstance(error, StudentError) and "removed your name" in str(error)
    finally:
        a.set_paused(TEACHER_CODE, False)
        b.remove_student(TEACHER_CODE, "flight-remove", "Finn", let_back=True)
    stream = collect(itertools.chain([opening], gus))  # Gus never hears Finn's sentence: B took the picture over
    assert [frame.step_index for frame in stream.frames] == list(range(STEPS))
    assert judge(stream.image).colour == "red", replicas.log(B)


def test_a_replica_killed_mid_run_hands_its_picture_to_the_survivor(replicas):
    spec = request("a blue square on the right", seed=12, num_inference_steps=LONG)
    # Ada's request reaches replica A, which claims it, charges her and computes it.
    on_a = generate(replicas, A, spec, "ada")
    assert next(on_a).status.source == pb.TRAJECTORY_SOURCE_COMPUTED
    b_started = steps_done(replicas, B)
    # The same request (her second tab, say) reaches B, which follows A's frames through Redis.
    seen: list[pb.GenerateResponse] = []
    two_frames = threading.Event()

    def follow() -> None:
        for response in generate(replicas, B, spec, "ada"):
            seen.append(response)
            if sum(r.WhichOneof("event") == "frame" for r in seen) == 2:
                two_frames.set()

    reader = threading.Thread(target=follow)
    reader.start()
    assert two_frames.wait(120), replicas.log(B)
    replicas.kill(A)  # mid-run: A's claim expires within seconds, and B takes the job over
    reader.join(120)
    on_a.close()

    stream = collect(iter(seen))
    assert stream.status.source == pb.TRAJECTORY_SOURCE_JOINED
    assert [frame.step_index for frame in stream.frames] == list(range(LONG))  # none lost, none twice
    verdict = judge(stream.image)
    assert (verdict.colour, verdict.shape) == ("blue", "square"), replicas.log(B)
    # B computed it again from step 0 (it was still running on A when A died, so it was not stored).
    assert steps_done(replicas, B) == b_started + LONG

    # Charged once: what the same request costs Bob on B alone, where nothing is shared.
    collect(generate(replicas, B, request("a blue square on the right", seed=13, num_inference_steps=LONG), "bob"))
    assert tokens_left(replicas, "ada") == pytest.approx(tokens_left(replicas, "bob"), abs=0.2)
    assert tokens_left(replicas, "ada") < BURST - 0.8  # (and she was charged)
