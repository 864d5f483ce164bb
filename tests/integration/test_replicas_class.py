"""Two replicas of the service on one Redis act as one class: real processes, real Redis, real gRPC.

A district runs one replica per GPU behind round-robin, so a student's calls, and the
teacher's, land on either. Present mode, quick checks and their tallies, the roster
(names held and removed), "one picture at a time" and the word the class taught its
model (lesson 10) must be the class's, not a
replica's, and must survive a replica's restart (`services/inference/together/shared.py`).
Waits are on conditions, with generous bounds; the times measured are printed, not asserted.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Iterator

import grpc
import pytest

from services.common.api import pb
from services.common.client import ClassroomClient, StudentError
from tests.integration.helpers import collect, request
from tests.support.drawings import heart_png
from tests.support.replicas import TEACHER_CODE, Replicas, running_replicas

BOUND_S = 20.0  # generous: these 2 cores are shared; the design's figure is "within 1 s"


@pytest.fixture(scope="module")
def replicas(tmp_path_factory) -> Iterator[Replicas]:
    with running_replicas(tmp_path_factory.mktemp("replicas"), count=2) as running:
        yield running


def first_example(client: ClassroomClient) -> str:
    """A lesson example of the replicas' catalog (present mode shows one)."""
    return client.lessons().entries[0].id


def watch_into(client: ClassroomClient) -> tuple[queue.Queue[tuple[float, pb.ClassState]], threading.Event]:
    """Read a WatchClass stream on a thread: (arrival time, state) into a queue until `stop` is set."""
    states: queue.Queue[tuple[float, pb.ClassState]] = queue.Queue()
    stop = threading.Event()

    def read() -> None:
        stream = client.watch_class()
        try:
            for state in stream:
                states.put((time.monotonic(), state))
                if stop.is_set():
                    return
        except grpc.RpcError:
            return
        finally:
            stream.close()

    threading.Thread(target=read, daemon=True).start()
    return states, stop


def state_where(states: queue.Queue, wanted, bound_s: float = BOUND_S) -> tuple[float, pb.ClassState]:
    """The first state read that satisfies `wanted`, within the bound."""
    deadline = time.monotonic() + bound_s
    while (left := deadline - time.monotonic()) > 0:
        try:
            arrived, state = states.get(timeout=left)
        except queue.Empty:
            break
        if wanted(state):
            return arrived, state
    raise AssertionError(f"no class state as wanted within {bound_s} s")


def test_present_mode_set_through_a_wakes_a_watcher_on_b(replicas):
    teacher_a, student_b = replicas.client(0, "present-7"), replicas.client(1, "present-7")
    example = first_example(teacher_a)
    states, stop = watch_into(student_b)
    state_where(states, lambda s: not s.present.leading)  # the watcher is reading
    sent = time.monotonic()
    led = teacher_a.set_present(TEACHER_CODE, True, example, step=3)
    arrived, seen = state_where(states, lambda s: s.present.leading)
    stop.set()
    print(f"present mode through A seen on B after {arrived - sent:.3f} s")
    assert (seen.present.example_id, seen.present.step, seen.present.lead_id) == (example, 3, led.present.lead_id)
    assert seen.version == led.version  # one class, one version
    assert student_b.class_state().present.example_id == example
    # Released through B, the teacher's call on A reads it released.
    replicas.client(1, "present-7").set_present(TEACHER_CODE, False)
    assert not teacher_a.class_state().present.leading


def test_a_quick_check_asked_on_a_is_answered_on_b_and_counted_on_a(replicas):
    teacher_a, on_a, on_b = (replicas.client(i, "check-7") for i in (0, 0, 1))
    asked = teacher_a.ask_quick_check(TEACHER_CODE, question="Which is first?", choices=("noise", "picture"), answer=0)
    assert on_b.class_state().quick_check.id == asked.id  # open on B too
    on_b.answer_quick_check(asked.id, 0, "s-ada", "Ada")
    on_a.answer_quick_check(asked.id, 1, "s-ben", "Ben")
    with pytest.raises(StudentError) as twice:  # one answer each, whichever replica the second reaches
        on_a.answer_quick_check(asked.id, 1, "s-ada", "Ada")
    assert twice.value.code == grpc.StatusCode.ALREADY_EXISTS
    counted = teacher_a.quick_check(TEACHER_CODE)
    assert (counted.answered, list(counted.tally)) == (2, [1, 1])
    assert on_b.class_state().quick_check.answered == 2 and not on_b.class_state().quick_check.tally  # not revealed
    replicas.client(1, "check-7").reveal_quick_check(TEACHER_CODE)  # revealed through B: answers close on A
    with pytest.raises(StudentError):
        on_a.answer_quick_check(asked.id, 0, "s-cy", "Cy")
    assert list(on_a.class_state().quick_check.tally) == [1, 1]


def test_one_name_across_replicas(replicas):
    a, b = replicas.client(0, "names-7"), replicas.client(1, "names-7")
    a.join_class("Ada", "tab-ada", "10.0.0.5", browser="browser-ada")
    with pytest.raises(StudentError, match="already"):  # held through A, refused through B from another browser
        b.join_class("ADA", "tab-thief", "10.0.0.5", browser="browser-thief")
    b.join_class("Ada", "tab-ada-2", "10.0.0.5", browser="browser-ada")  # her own browser takes it over on B
    with pytest.raises(StudentError):  # and the older tab, renewing through A, is signed out
        a.join_class("Ada", "tab-ada", "10.0.0.5", browser="browser-ada")
    b.remove_student(TEACHER_CODE, "names-7", "Ada")  # removed through B ...
    with pytest.raises(StudentError, match="removed"):  # ... refused on A, to sign in and to draw
        a.join_class("Ada", "tab-ada-3", "10.0.0.6", browser="browser-other")
    with pytest.raises(StudentError, match="removed"):
        collect(a.generate(request("a red circle", seed=1, num_inference_steps=2), "s-ada", name="Ada"))
    roster = {(s.name, s.removed) for s in a.classroom(TEACHER_CODE).students if s.class_name == "names-7"}
    assert ("Ada", True) in roster  # the teacher's page on A lists what was done on B
    assert a.remove_student(TEACHER_CODE, "names-7", "Ada", let_back=True)
    b.join_class("Ada", "tab-ada-4", "10.0.0.5", browser="browser-ada")


def test_a_name_removed_through_b_stops_its_picture_on_a(replicas):
    a, b = replicas.client(0, "stop-7"), replicas.client(1, "stop-7")
    a.set_paused(TEACHER_CODE, True)  # the picture waits on A: it is surely still there when the name goes
    try:
        stream = a.generate(request("a green triangle", seed=9, num_inference_steps=3), "s-finn", name="Finn")
        opening = next(stream)
        b.remove_student(TEACHER_CODE, "stop-7", "Finn")
        ended: queue.Queue[BaseException | None] = queue.Queue()

        def read_on() -> None:  # on a thread: a picture that is not stopped waits for the teacher, forever
            try:
                collect(itertools.chain([opening], stream))
                ended.put(None)
            except BaseException as error:
                ended.put(error)

        threading.Thread(target=read_on, daemon=True).start()
        error = ended.get(timeout=BOUND_S)
        assert isinstance(error, StudentError) and "removed your name" in str(error)
    finally:
        a.set_paused(TEACHER_CODE, False)
        b.remove_student(TEACHER_CODE, "stop-7", "Finn", let_back=True)


def test_one_picture_at_a_time_across_replicas(replicas):
    a, b = replicas.client(0, "turns-7"), replicas.client(1, "turns-7")
    a.set_paused(TEACHER_CODE, True)  # A admits the picture and holds it: it is surely still running
    try:
        waiting = a.generate(request("a blue square", seed=7, num_inference_steps=3), "s-dan", name="Dan")
        opening = next(waiting)
        assert opening.HasField("status")  # admitted on A
        with pytest.raises(StudentError, match="already have a picture") as busy:
            collect(b.generate(request("a red circle", seed=8, num_inference_steps=3), "s-dan", name="Dan"))
        assert busy.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        a.set_paused(TEACHER_CODE, False)
    assert collect(itertools.chain([opening], waiting)).final is not None
    # Made on A: the student's next picture runs on B at once (the turn is given back before the picture is sent).
    assert collect(b.generate(request("a red circle", seed=8, num_inference_steps=3), "s-dan")).final


def test_the_class_survives_a_restart_of_every_replica(replicas):
    teacher_a = replicas.client(0, "restart-7")
    example = first_example(teacher_a)
    teacher_a.set_present(TEACHER_CODE, True, example, step=2)
    asked = teacher_a.ask_quick_check(TEACHER_CODE, question="Same seed, same picture?", choices=("yes", "no"))
    replicas.client(1, "restart-7").answer_quick_check(asked.id, 0, "s-eve", "Eve")
    teacher_a.join_class("Eve", "tab-eve", "10.0.0.7", browser="browser-eve")
    teacher_a.remove_student(TEACHER_CODE, "restart-7", "Mallory")
    replicas.kill(0), replicas.kill(1)  # kill -9 both: no replica's memory survives, only Redis
    replicas.start(0), replicas.start(1)
    for index in (0, 1):
        after = replicas.client(index, "restart-7")
        state = after.class_state()
        assert (state.present.leading, state.present.example_id, state.present.step) == (True, example, 2)
        assert state.quick_check.id == asked.id and after.quick_check(TEACHER_CODE).answered == 1
        with pytest.raises(StudentError, match="already"):
            after.join_class("Eve", f"tab-thief-{index}", "10.0.0.7", browser=f"browser-thief-{index}")
        with pytest.raises(StudentError, match="removed"):
            after.join_class("Mallory", f"tab-mallory-{index}", "10.0.0.8", browser=f"browser-mallory-{index}")


def test_a_word_taught_through_a_is_the_class_s_on_b_and_after_a_restart(replicas):
    """Lesson 10 across replicas: drawings handed in on either, taught on A, prompted on B, kept through kill -9."""
    a, b = replicas.client(0, "hearts-7"), replicas.client(1, "hearts-7")
    for student in range(4):
        (a if student % 2 else b).submit_drawing(heart_png(200 + student), f"s-h{student}", name=f"H{student}")
    assert len(b.drawings(TEACHER_CODE)) == 4
    training = a.teach_word(TEACHER_CODE, "heart", 10)
    assert next(training).phase == pb.TEACHING_PHASE_TRAINING
    assert b.teaching().phase in (pb.TEACHING_PHASE_TRAINING, pb.TEACHING_PHASE_TAUGHT)  # B reads A's progress
    assert list(training)[-1].phase == pb.TEACHING_PHASE_TAUGHT
    assert b.teaching().taught_word == "heart" and len(b.teaching().losses) == 10

    heart = request("a blue heart on the right", seed=11, num_inference_steps=8)
    on_a = collect(a.generate(heart, "s-h1"))
    on_b = collect(b.generate(heart, "s-h2"))
    plain = collect(replicas.client(1, "plain-7").generate(heart, "s-p1"))  # another class: the model itself
    assert on_a.status.trajectory_key == on_b.status.trajectory_key != plain.status.trajectory_key

    replicas.kill(0), replicas.kill(1)
    replicas.start(0), replicas.start(1)
    after = replicas.client(1, "hearts-7")
    assert after.teaching().taught_word == "heart"
    fresh = request("a blue heart on the right", seed=12, num_inference_steps=8)  # computed again, not stored
    taught_again = collect(after.generate(fresh, "s-h3"))
    plain_again = collect(replicas.client(0, "plain-7").generate(fresh, "s-p2"))
    assert taught_again.status.source == pb.TRAJECTORY_SOURCE_COMPUTED
    assert (taught_again.image != plain_again.image).any()  # the class's model was built again from Redis

    # Forgotten through B while A trains again: A's training ends as stopped, and no replica keeps a word.
    a = replicas.client(0, "hearts-7")
    training = a.teach_word(TEACHER_CODE, "heart", 400)
    assert next(training).phase == pb.TEACHING_PHASE_TRAINING
    assert after.reset_word(TEACHER_CODE)
    ended = list(training)[-1]
    assert ended.phase == pb.TEACHING_PHASE_STOPPED and ended.taught_word == "", ended
    assert a.teaching().taught_word == "" and after.teaching().taught_word == ""
    forgotten = collect(a.generate(request("a blue heart on the right", seed=13, num_inference_steps=8), "s-h4"))
    plain_too = collect(replicas.client(1, "plain-7").generate(request("a blue heart on the right", seed=13,
                                                                       num_inference_steps=8), "s-p3"))  # fmt: skip
    assert forgotten.status.trajectory_key == plain_too.status.trajectory_key
