"""The TeacherService against a real server: the teacher code, the live queue, pause, clearing, precompute."""

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from services.common.api import NAME_METADATA, STUDENT_METADATA, TEACHER_METADATA, pb, pb_grpc, unbatch
from services.inference.moderation import DEFAULT_BLOCKLIST
from tests.integration.helpers import collect, request
from tests.support.redis_server import RedisServer
from tests.support.servers import running_server, stub_for

TEACHER = ((TEACHER_METADATA, "owl-42"),)
LESSONS = Path(__file__).resolve().parents[1] / "support" / "lessons.yaml"


def student(student_id: str, name: str) -> tuple[tuple[str, str | bytes], ...]:
    return (STUDENT_METADATA, student_id), (NAME_METADATA, name.encode())


def teacher_stub(channel: grpc.Channel) -> pb_grpc.TeacherServiceStub:
    return pb_grpc.TeacherServiceStub(channel)


def heard(responses) -> Iterator[str]:
    """A Generate stream's frames and final, in order, as they arrive."""
    for response in unbatch(responses):
        if response.WhichOneof("event") == "frame":
            yield f"frame {response.frame.step_index}"
        elif response.WhichOneof("event") == "final":
            yield "final"


def wait_for(predicate, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_only_the_teacher_code_opens_the_teacher_service(settings):
    with running_server(settings.model_copy(update={"redis_url": ""})) as server:  # no teacher code configured
        channel, _ = stub_for(server.address)
        with pytest.raises(grpc.RpcError) as caught:
            teacher_stub(channel).GetClassroom(pb.GetClassroomRequest(), metadata=TEACHER)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED and "no teacher code" in caught.value.details()
        channel.close()
    with running_server(settings.model_copy(update={"redis_url": "", "teacher_code": "owl-42"})) as server:
        channel, _ = stub_for(server.address)
        teacher = teacher_stub(channel)
        for metadata in ((), ((TEACHER_METADATA, "owl-41"),)):
            for call, message in ((teacher.GetClassroom, pb.GetClassroomRequest()),
                                  (teacher.SetPaused, pb.SetPausedRequest(paused=True)),
                                  (teacher.ClearQueue, pb.ClearQueueRequest()),
                                  (teacher.PrecomputeLessons, pb.PrecomputeLessonsRequest())):  # fmt: skip
                with pytest.raises(grpc.RpcError) as caught:
                    call(message, metadata=metadata)
                assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert not teacher.GetClassroom(pb.GetClassroomRequest(), metadata=TEACHER).paused
        channel.close()


def test_the_teacher_sees_the_queue_pauses_and_clears_it(settings):
    config = settings.model_copy(update={"redis_url": "", "teacher_code": "owl-42", "max_batch_size": 1,
                                         "blocklist": DEFAULT_BLOCKLIST})  # fmt: skip
    with running_server(config) as server:
        channel, stub = stub_for(server.address)
        teacher = teacher_stub(channel)
        long = request("a long river", seed=1, num_inference_steps=150, width=128, height=128)
        running = stub.Generate(long, metadata=student("s1", "Ada"))
        seen: list[str] = []  # what Ada's stream has brought so far: "frame 0", ..., "final"

        def read() -> None:
            for event in heard(running):
                seen.append(event)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        assert wait_for(lambda: teacher.GetClassroom(pb.GetClassroomRequest(), metadata=TEACHER).jobs)
        waiting = stub.Generate(request("a short hop", seed=2, num_inference_steps=2, width=64, height=64),
                                metadata=student("s2", "Björn"))  # fmt: skip
        assert wait_for(lambda: len(teacher.GetClassroom(pb.GetClassroomRequest(), metadata=TEACHER).jobs) == 2)

        room = teacher.GetClassroom(pb.GetClassroomRequest(), metadata=TEACHER)
        assert [(j.student_name, j.running, j.position) for j in room.jobs] == [("Ada", True, 0), ("Björn", False, 1)]
        assert all(j.prompt == "" for j in room.jobs)  # names, not prompts
        assert room.max_batch_size == 1 and room.stats.active_generations == 1
        if room.device.startswith("cuda"):  # the GPU's memory, as the teacher's page shows it
            assert 0 < room.gpu_memory_used_bytes < room.gpu_memory_total_bytes
        else:
            assert room.device == "cpu" and room.gpu_memory_used_bytes == room.gpu_memory_total_bytes == 0
        opened = teacher.GetClassroom(pb.GetClassroomRequest(include_prompts=True), metadata=TEACHER)
        assert [j.prompt for j in opened.jobs] == ["a long river", "a short hop"]

        # Pause: the running generation stops between steps; resume: it goes on.
        assert teacher.SetPaused(pb.SetPausedRequest(paused=True), metadata=TEACHER).paused

        def steps_done() -> int:
            return teacher.GetClassroom(pb.GetClassroomRequest(), metadata=TEACHER).jobs[0].steps_done

        # A step under way when the pause came finishes (however long a busy CPU takes); then the worker,
        # waiting, sends that step's frame. While it runs, a step's frame goes out only after the next
        # step is computed, so Ada holding a frame for every step done (at least one: a running job
        # takes a step before the worker looks at the pause) means the worker has stopped.
        def stopped() -> bool:
            frames = len(seen)  # first: a step finished after it only makes `done` larger
            done = steps_done()
            return done >= 1 and frames == done

        # Seen once, that can be a step sent as the next one starts (the worker read the pause before it
        # came): at most that one step follows. Seen again after it, the worker has stopped for good.
        assert wait_for(stopped, timeout=600), (len(seen), steps_done())
        first = steps_done()
        time.sleep(2.0)
        assert wait_for(stopped, timeout=600), (len(seen), steps_done())
        held = steps_done()
        assert held <= first + 1
        time.sleep(2.0)  # none follows (a check that nothing happens, not a wait for something)
        assert steps_done() == held < 150
        assert seen == [f"frame {i}" for i in range(held)]

        # Clearing the queue: the waiting student is told why; the running one is untouched.
        assert teacher.ClearQueue(pb.ClearQueueRequest(), metadata=TEACHER).cleared == 1
        with pytest.raises(grpc.RpcError) as caught:
            collect(waiting)
        assert caught.value.code() == grpc.StatusCode.ABORTED and "teacher cleared the queue" in caught.value.details()
        assert not teacher.SetPaused(pb.SetPausedRequest(paused=False), metadata=TEACHER).paused
        reader.join(600)  # 150 steps at 128 px: a busy CPU may take minutes
        assert seen == [f"frame {i}" for i in range(150)] + ["final"]

        # A blocked attempt: the teacher sees who and when, and the words only when opened.
        with pytest.raises(grpc.RpcError):
            collect(
                stub.Generate(request("a naked statue", seed=3, width=64, height=64), metadata=student("s3", "Chen"))
            )
        room = teacher.GetClassroom(pb.GetClassroomRequest(), metadata=TEACHER)
        assert [(b.student_name, b.prompt) for b in room.blocked] == [("Chen", "")]
        assert abs(room.blocked[0].unix_time - time.time()) < 60
        opened = teacher.GetClassroom(pb.GetClassroomRequest(include_prompts=True), metadata=TEACHER)
        assert opened.blocked[0].prompt == "a naked statue"
        assert room.stats.generations_completed == 1 and room.stats.generations_cancelled == 1
        channel.close()


def test_precompute_from_the_teacher_page_renders_every_lesson_once(settings, tmp_path):
    redis_server = RedisServer(tmp_path / "redis").start()
    config = settings.model_copy(update={"redis_url": redis_server.url, "teacher_code": "owl-42", "catalog": LESSONS})
    try:
        with running_server(config) as server:
            channel, stub = stub_for(server.address)
            teacher = teacher_stub(channel)

            def finished() -> pb.PrecomputeProgress:
                assert wait_for(lambda: not teacher.GetClassroom(pb.GetClassroomRequest(),
                                                                 metadata=TEACHER).precompute.running, 300)  # fmt: skip
                return teacher.GetClassroom(pb.GetClassroomRequest(), metadata=TEACHER).precompute

            started = teacher.PrecomputeLessons(pb.PrecomputeLessonsRequest(), metadata=TEACHER).progress
            assert started.running
            first = finished()
            lessons = stub.ListLessons(pb.ListLessonsRequest())
            assert first.total == len(lessons.entries) and first.rendered == first.total and first.failed == 0
            assert all(e.cache_state == pb.CACHE_STATE_LESSON for e in lessons.entries)
            teacher.PrecomputeLessons(pb.PrecomputeLessonsRequest(), metadata=TEACHER)
            second = finished()
            assert (second.total, second.rendered, second.skipped) == (0, 0, len(lessons.entries))
            opened = collect(stub.Generate(lessons.entries[0].request))
            assert opened.status.cache_hit
            channel.close()
    finally:
        redis_server.stop()
