"""One GPU for a class: step-level batching, the fair queue, admission, cancellation, metrics."""

import gc
import threading
import time
import urllib.request

import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from services.common.api import CLASS_METADATA, STUDENT_METADATA, pb, unbatch
from tests.integration.helpers import collect, request
from tests.support.servers import free_port, running_server, stub_for


def student(name):
    return ((STUDENT_METADATA, name),)


def stats(stub):
    return stub.GetServerStats(pb.GetServerStatsRequest())


@pytest.fixture(scope="module")
def batching(settings):
    """A server that computes every request (no cache, no single flight), four generations per UNet call."""
    config = settings.model_copy(
        update={"redis_url": "", "single_flight": False, "max_batch_size": 4, "metrics_port": free_port()}
    )
    with running_server(config) as server:
        channel, stub = stub_for(server.address)
        yield server, stub
        channel.close()


MIXED = [
    request("a red barn in a field", seed=1, num_inference_steps=8, guidance_scale=7.5, scheduler="ddim"),
    request("a blue boat on a lake", seed=2, num_inference_steps=6, guidance_scale=3.0, scheduler="euler_ancestral"),
    request("a green frog on a leaf", seed=3, num_inference_steps=10, guidance_scale=0.0, scheduler="lms"),
    request("a yellow taxi at night", seed=4, num_inference_steps=7, guidance_scale=12.0, scheduler="dpm_solver_pp"),
]
for message in MIXED:
    message.width = message.height = 64
    message.include.paths.extend(["latent", "predicted_x0"])


def run_together(stub, messages, names):
    streams = [None] * len(messages)
    start = threading.Barrier(len(messages))

    def read(index):
        start.wait()
        streams[index] = collect(stub.Generate(messages[index], metadata=student(names[index])))

    threads = [threading.Thread(target=read, args=(i,)) for i in range(len(messages))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return streams


def test_batched_requests_get_the_frames_they_get_alone(batching):
    _, stub = batching
    alone = [collect(stub.Generate(m, metadata=student("solo"))) for m in MIXED]
    assert all(f.timings.batch_size == 2 for s in alone for f in s.frames)
    together = run_together(stub, MIXED, ["ann", "bob", "cy", "dee"])
    assert max(f.timings.batch_size for s in together for f in s.frames) == 8  # four guided generations at once
    for one, shared in zip(alone, together, strict=True):
        assert len(shared.frames) == len(one.frames)
        for a, b in zip(one.frames, shared.frames, strict=True):
            np.testing.assert_allclose(
                np.frombuffer(b.latent.data, np.float16), np.frombuffer(a.latent.data, np.float16), atol=2e-2
            )
        difference = np.abs(shared.image.astype(int) - one.image.astype(int))
        assert difference.max() <= 2 and difference.mean() < 0.1


def test_requests_join_and_leave_a_running_batch(batching):
    _, stub = batching
    long = request("a long walk", seed=10, num_inference_steps=40, width=64, height=64)
    frames = []
    joined = threading.Event()

    def read_long():
        for response in unbatch(stub.Generate(long, metadata=student("long"))):
            if response.WhichOneof("event") == "frame":
                frames.append(response.frame.timings.batch_size)
                if len(frames) == 5:
                    joined.set()

    reader = threading.Thread(target=read_long)
    reader.start()
    assert joined.wait(60)
    short = collect(stub.Generate(request("a short hop", seed=11, num_inference_steps=5, width=64, height=64),
                                  metadata=student("short")))  # fmt: skip
    # A cancelled request's place is taken by the next one.
    cancelled_before = stats(stub).generations_cancelled
    cancelled = stub.Generate(request("never mind", seed=12, num_inference_steps=40, width=64, height=64),
                              metadata=student("quitter"))  # fmt: skip
    for response in unbatch(cancelled):
        if response.WhichOneof("event") == "frame":
            cancelled.cancel()
            break
    # The server hears of the cancel over the network, after the client has moved on: the quitter asks
    # again once it has (a student asking sooner is told they already have a picture being made).
    deadline = time.monotonic() + 30
    while stats(stub).generations_cancelled == cancelled_before and time.monotonic() < deadline:
        time.sleep(0.02)
    later = collect(stub.Generate(request("one more", seed=13, num_inference_steps=4, width=64, height=64),
                                  metadata=student("quitter")))  # fmt: skip
    reader.join(120)
    assert frames[:5] == [2] * 5  # alone at first
    assert 4 in frames  # then sharing its UNet calls with the short one
    assert frames[-1] == 2  # alone again once the others left
    assert {f.timings.batch_size for f in short.frames} == {4}
    assert len(later.frames) == 4  # the quitter's place went to the next request


def test_one_live_generation_per_student(batching):
    _, stub = batching
    first = unbatch(stub.Generate(request("mine", seed=20, num_inference_steps=30, width=64, height=64),
                                  metadata=student("eager")))  # fmt: skip
    assert next(first).WhichOneof("event") == "status"
    with pytest.raises(grpc.RpcError) as caught:
        collect(stub.Generate(request("also mine", seed=21, width=64, height=64), metadata=student("eager")))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "You already have a picture being made" in caught.value.details()
    assert sum(r.WhichOneof("event") == "frame" for r in first) == 30
    assert collect(stub.Generate(request("now me", seed=22, num_inference_steps=2, width=64, height=64),
                                 metadata=student("eager"))).final  # fmt: skip


def test_the_queue_reports_positions_then_refuses_when_full(settings):
    config = settings.model_copy(
        update={"redis_url": "", "single_flight": False, "max_batch_size": 1, "max_queue": 2, "metrics_port": 0}
    )
    with running_server(config) as server:
        channel, stub = stub_for(server.address)
        running = stub.Generate(request("first", seed=30, num_inference_steps=60, width=64, height=64),
                                metadata=student("s1"))  # fmt: skip
        deadline = time.monotonic() + 30
        while stats(stub).active_generations < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        waiting = [
            stub.Generate(
                request(f"waiting {i}", seed=31 + i, num_inference_steps=2, width=64, height=64),
                metadata=student(f"w{i}"),
            )
            for i in range(2)
        ]
        while stats(stub).queued_generations < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        with pytest.raises(grpc.RpcError) as caught:
            collect(stub.Generate(request("too many", seed=40, width=64, height=64), metadata=student("late")))
        error = caught.value
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "The class queue is full right now (2 pictures are waiting)" in error.details()
        retry = error_details_pb2.RetryInfo()
        assert rpc_status.from_call(error).details[0].Unpack(retry) and retry.retry_delay.seconds > 0

        results = [None, None]
        threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, collect(waiting[i]))) for i in range(2)]
        for thread in threads:
            thread.start()
        collect(running)
        for thread in threads:
            thread.join(120)
        assert [q.position for q in results[0].queue] == [1]
        assert [q.position for q in results[1].queue] == [2, 1]  # it moved up as the queue went
        assert stats(stub).rejected_queue_full == 1
        channel.close()


def test_a_class_may_fill_only_its_share_of_the_queue(settings):
    config = settings.model_copy(update={"redis_url": "", "single_flight": False, "max_batch_size": 1,
                                         "max_queue_per_class": 1, "metrics_port": 0})  # fmt: skip

    def member(student_id: str, classroom: str):
        return (*student(student_id), (CLASS_METADATA, classroom.encode()))

    with running_server(config) as server:
        channel, stub = stub_for(server.address)
        running = stub.Generate(request("first", seed=60, num_inference_steps=60, width=64, height=64),
                                metadata=member("a1", "7B"))  # fmt: skip
        deadline = time.monotonic() + 30
        while stats(stub).active_generations < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        waiting = stub.Generate(request("second", seed=61, num_inference_steps=2, width=64, height=64),
                                metadata=member("a2", "7B"))  # fmt: skip
        while stats(stub).queued_generations < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        with pytest.raises(grpc.RpcError) as caught:
            collect(stub.Generate(request("third", seed=62, width=64, height=64), metadata=member("a3", "7B")))
        error = caught.value
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "Your class already has 1 picture waiting" in error.details() and "try again in" in error.details()
        retry = error_details_pb2.RetryInfo()
        assert rpc_status.from_call(error).details[0].Unpack(retry) and retry.retry_delay.seconds > 0
        # Another class sharing the server still gets in line.
        other = collect(stub.Generate(request("fourth", seed=63, num_inference_steps=2, width=64, height=64),
                                      metadata=member("b1", "8C")))  # fmt: skip
        assert other.final and next(q.position for q in other.queue) == 2
        assert collect(waiting).final and collect(running).final
        channel.close()


def test_a_reader_that_never_reads_does_not_stop_the_others(batching):
    _, stub = batching
    before = stats(stub)
    stalled = unbatch(stub.Generate(request("ignored", seed=50, num_inference_steps=20,
                                            include=["latent", "noise_predictions"], width=256, height=256),
                                    metadata=student("sleepy")))  # fmt: skip
    assert next(stalled).WhichOneof("event") == "status"
    other = collect(stub.Generate(request("busy", seed=51, num_inference_steps=20, width=64, height=64),
                                  metadata=student("awake")))  # fmt: skip
    assert len(other.frames) == 20
    deadline = time.monotonic() + 60
    while stats(stub).generations_completed < before.generations_completed + 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stats(stub).generations_completed == before.generations_completed + 2  # the unread one finished too
    assert sum(r.WhichOneof("event") == "frame" for r in stalled) == 20


def test_metrics_endpoint_reports_the_load(batching):
    server, stub = batching
    run_together(stub, MIXED, ["m1", "m2", "m3", "m4"])
    with pytest.raises(grpc.RpcError):
        collect(stub.Generate(request(""), metadata=student("m1")))
    gc.collect()  # the server runs in this process: its pause is measured
    with urllib.request.urlopen(f"http://127.0.0.1:{server.server.metrics_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    for gauge in ("classroom_queue_length", "classroom_running_generations"):
        assert gauge in values
    assert values["classroom_batch_generations_count"] > 0
    assert (
        values['classroom_batch_generations_bucket{le="4.0"}'] > values['classroom_batch_generations_bucket{le="1.0"}']
    )
    assert values["classroom_unet_step_seconds_count"] == stats(stub).unet_calls
    assert values["classroom_queue_seconds_count"] > 0
    assert values["classroom_frames_sent_total"] >= sum(m.num_inference_steps for m in MIXED)
    assert values["classroom_cache_misses_total"] > 0 and "classroom_cache_hits_total" in values
    assert "classroom_rejected_requests_total" in text
    assert values['classroom_gc_pause_seconds_count{generation="2"}'] >= 1
    assert values['classroom_gc_pause_seconds_sum{generation="2"}'] > 0


def test_the_queue_is_bounded_by_work_not_only_by_places(settings):
    """Admission by cost: waiting work (steps x pixels, in standard pictures) has a ceiling."""
    config = settings.model_copy(update={"redis_url": "", "single_flight": False, "max_batch_size": 1,
                                         "max_queue_work": 1.1, "metrics_port": 0})  # fmt: skip
    with running_server(config) as server:
        channel, stub = stub_for(server.address)
        info = stub.GetModelInfo(pb.GetModelInfoRequest())
        steps, size = info.default_steps, info.default_width  # one standard picture
        running = stub.Generate(request("first", seed=70, num_inference_steps=60, width=64, height=64),
                                metadata=student("c1"))  # fmt: skip
        deadline = time.monotonic() + 30
        while stats(stub).active_generations < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        half = request("half a picture", seed=71, num_inference_steps=steps, width=size, height=size // 2)
        waiting = stub.Generate(half, metadata=student("c2"))
        while stats(stub).queued_generations < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        # Twice the steps of a standard picture: one picture of work, on top of the half waiting
        # (and the first's 60 steps at 64 px still to run: under 0.04 of a 512-pixel picture).
        heavy = request("a long one", seed=72, num_inference_steps=2 * steps, width=size, height=size // 2)
        with pytest.raises(grpc.RpcError) as caught:
            collect(stub.Generate(heavy, metadata=student("c3")))
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "The class queue is full right now (1 picture is waiting)" in caught.value.details()
        assert stats(stub).rejected_queue_full == 1
        # The same number of places, with less work, still gets in line.
        light = collect(stub.Generate(request("a short one", seed=73, num_inference_steps=steps, width=size,
                                              height=size // 2), metadata=student("c4")))  # fmt: skip
        assert light.final and next(q.position for q in light.queue) == 2
        collect(running)
        assert collect(waiting).final
        channel.close()


def test_a_waiting_reader_hears_its_place_again_and_leaving_frees_it(settings, monkeypatch):
    """A closed tab's request leaves the queue: readers are reminded of their place, and a cancel frees it."""
    from services.inference.trajectories import log as trajectories

    monkeypatch.setattr(trajectories, "QUEUE_REMINDER_S", 0.3)
    config = settings.model_copy(update={"redis_url": "", "single_flight": False, "max_batch_size": 1,
                                         "metrics_port": 0})  # fmt: skip
    with running_server(config) as server:
        channel, stub = stub_for(server.address)
        server.classroom.pause(True)  # the teacher paused: nothing moves in the queue
        call = stub.Generate(request("waiting", seed=80, num_inference_steps=2, width=64, height=64),
                             metadata=student("gone"))  # fmt: skip
        events = unbatch(call)
        kinds = [next(events).WhichOneof("event") for _ in range(4)]
        # The same place, told again while nothing changes: a reader that went away finds out on writing.
        assert kinds == ["status", "queue", "queue", "queue"]
        assert stats(stub).queued_generations == 1
        call.cancel()  # what the front end does when its tab is gone
        deadline = time.monotonic() + 30
        while stats(stub).queued_generations and time.monotonic() < deadline:
            time.sleep(0.02)
        assert stats(stub).queued_generations == 0  # left at once, although the class is still paused
        assert stats(stub).generations_cancelled == 1
        # Its student may ask again straight away.
        again = stub.Generate(request("again", seed=81, num_inference_steps=2, width=64, height=64),
                              metadata=student("gone"))  # fmt: skip
        while stats(stub).queued_generations < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert stats(stub).queued_generations == 1 and stats(stub).rejected_student_busy == 0
        server.classroom.pause(False)
        assert collect(again).final
        channel.close()


def test_a_busy_student_can_still_open_a_lesson_example(settings):
    """A lesson example is computed as the class's, not the student's: it takes none of their places."""
    from services.common.api import ADDRESS_METADATA, LESSON_METADATA
    from tests.frontend.conftest import LESSON_CATALOG

    update = {"redis_url": "", "single_flight": False, "max_batch_size": 1, "max_per_address": 1,
              "catalog": LESSON_CATALOG, "metrics_port": 0}  # fmt: skip
    config = settings.model_copy(update=update)
    with running_server(config) as server:
        channel, stub = stub_for(server.address)
        me = ((STUDENT_METADATA, "robin"), (ADDRESS_METADATA, "10.0.0.3"))
        mine = stub.Generate(request("my own", seed=90, num_inference_steps=60, width=64, height=64), metadata=me)
        deadline = time.monotonic() + 30
        while stats(stub).active_generations < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        with pytest.raises(grpc.RpcError) as caught:  # my own second picture waits for the first
            collect(stub.Generate(request("another", seed=91, num_inference_steps=2, width=64, height=64),
                                  metadata=me))  # fmt: skip
        assert "You already have a picture being made" in caught.value.details()
        entry = stub.ListLessons(pb.ListLessonsRequest(collection="seed-gallery")).entries[0]
        lesson = collect(stub.Generate(entry.request, metadata=(*me, (LESSON_METADATA, entry.id))))
        assert lesson.final and lesson.status.source == pb.TRAJECTORY_SOURCE_COMPUTED
        assert collect(mine).final
        channel.close()


def test_a_class_that_ends_together_is_decoded_in_one_call(batching, monkeypatch):
    server, stub = batching
    vae = server.classroom.model.vae
    sizes: list[int] = []
    original = vae.decode

    def counted(latents, *args, **kwargs):
        sizes.append(latents.shape[0])
        return original(latents, *args, **kwargs)

    monkeypatch.setattr(vae, "decode", counted)
    # Only the final pictures decode: the mask leaves out the per-step decode (the tiny VAE's default).
    messages = [request(f"a kite number {i}", ["latent_preview"], seed=40 + i, num_inference_steps=5, width=64,
                        height=64) for i in range(3)]  # fmt: skip
    alone = [collect(stub.Generate(m, metadata=student("solo"))) for m in messages]
    assert sizes == [1, 1, 1]
    sizes.clear()
    scheduler = server.classroom.scheduler
    scheduler.pause(True)  # the three start at one step boundary, as a class does when the teacher says go
    try:
        together: list = []
        reading = threading.Thread(target=lambda: together.extend(run_together(stub, messages, ["kai", "lea", "mo"])))
        reading.start()
        deadline = time.monotonic() + 30
        while stats(stub).queued_generations < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        scheduler.pause(False)
    reading.join(120)
    assert all(f.timings.batch_size == 6 for s in together for f in s.frames)  # they started and ended together
    assert sizes == [3]
    for one, shared in zip(alone, together, strict=True):
        difference = np.abs(shared.image.astype(int) - one.image.astype(int))
        assert difference.max() <= 2 and difference.mean() < 0.1
