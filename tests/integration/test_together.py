"""Teaching together against a real server and a real Redis: the gallery, quick checks, present mode.

Every call goes through the shared client with the API token, as the front end
makes it; students are the ids and names the front end asserts.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from services.common.api import pb
from services.common.client import ClassroomClient, ClientSettings, StudentError
from services.common.codecs import decode_image
from tests.integration.helpers import collect, request
from tests.support.safety import with_safety_checker
from tests.support.servers import ServerThread, running_server

TOKEN = "the class's api token"
CODE = "owl-42"
LESSONS = Path(__file__).resolve().parents[1] / "support" / "lessons.yaml"


def client(server: ServerThread, class_name: str = "7B") -> ClassroomClient:
    return ClassroomClient(ClientSettings(inference_addr=server.address, api_token=TOKEN), class_name=class_name)


def make_picture(front_end: ClassroomClient, prompt: str, seed: int, student: str = "s-ada", name: str = "Ada"):
    """Generate (and so store) a picture as a student; its stream, read to the end."""
    message = request(prompt, seed=seed, num_inference_steps=3, width=64, height=64)
    return collect(front_end.generate(message, student, name=name))


@pytest.fixture
def config(settings, fresh_redis):
    redis = fresh_redis("together")
    return settings.model_copy(update={"redis_url": redis.url, "teacher_code": CODE, "api_token": TOKEN,
                                       "catalog": LESSONS})  # fmt: skip


@pytest.fixture
def server(config) -> Iterator[ServerThread]:
    with running_server(config) as running:
        yield running


def test_a_shared_picture_waits_for_the_teacher_then_shows_to_the_class(server):
    ada, ben = client(server), client(server)
    stream = make_picture(ada, "a watercolor fox", seed=1)
    item = ada.share_to_gallery(stream.status.trajectory_key, "s-ada", "Ada")
    assert item.status == pb.SUBMISSION_STATUS_PENDING
    assert (item.student_name, item.request.prompt, item.request.seed) == ("Ada", "a watercolor fox", 1)
    assert (decode_image(item.picture) == stream.image).all()  # the service's own picture, not the client's
    assert ben.gallery() == []  # pending: not yet in the gallery

    pending = ada.submissions(CODE)
    assert pending.approval_required and [i.id for i in pending.items] == [item.id]
    assert ada.review_submission(CODE, item.id, approve=True).status == pb.SUBMISSION_STATUS_APPROVED
    shown = ben.gallery()
    assert [(i.id, i.student_name, i.request.prompt) for i in shown] == [(item.id, "Ada", "a watercolor fox")]
    # Opening it in the player: its request is served from the cache, the same trajectory.
    again = collect(ben.generate(shown[0].request, "s-ben", name="Ben"))
    assert again.status.cache_hit and again.status.trajectory_key == item.trajectory_key

    # Another picture, hidden by the teacher: never in the gallery. Newest first.
    other = make_picture(ada, "a watercolor owl", seed=2)
    hidden = ada.share_to_gallery(other.status.trajectory_key, "s-ada", "Ada")
    ada.review_submission(CODE, hidden.id, approve=False)
    third = make_picture(ben, "a watercolor cat", seed=3, student="s-ben", name="Ben")
    ben.share_to_gallery(third.status.trajectory_key, "s-ben", "Ben")
    ada.set_gallery_approval(CODE, False)  # now shares go straight in
    fourth = make_picture(ben, "a watercolor hen", seed=4, student="s-ben", name="Ben")
    straight = ben.share_to_gallery(fourth.status.trajectory_key, "s-ben", "Ben")
    assert straight.status == pb.SUBMISSION_STATUS_APPROVED
    assert [i.request.prompt for i in ben.gallery()] == ["a watercolor hen", "a watercolor fox"]
    # Another class's gallery is its own.
    assert client(server, class_name="8C").gallery() == []
    assert ada.clear_gallery(CODE) == 4 and ben.gallery() == [] and ada.submissions(CODE).items == []


def test_only_stored_pictures_can_be_shared_and_only_once_each(server):
    ada = client(server)
    for key in ("0" * 32, "", "../../etc", "x" * 500):
        with pytest.raises(StudentError) as caught:
            ada.share_to_gallery(key, "s-ada", "Ada")
        assert caught.value.code == grpc.StatusCode.NOT_FOUND and "can't be shared" in str(caught.value)
    stream = make_picture(ada, "a watercolor fox", seed=1)
    first = ada.share_to_gallery(stream.status.trajectory_key, "s-ada", "Ada")
    assert ada.share_to_gallery(stream.status.trajectory_key, "s-ada", "Ada").id == first.id
    assert len(ada.submissions(CODE).items) == 1
    with pytest.raises(StudentError) as caught:  # the front end must say which student shares
        ada.share_to_gallery(stream.status.trajectory_key, "")
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    # A student's share is bounded.
    from services.inference.together.gallery import MAX_PER_STUDENT

    for seed in range(2, MAX_PER_STUDENT + 1):
        ada.share_to_gallery(make_picture(ada, "a watercolor fox", seed).status.trajectory_key, "s-ada", "Ada")
    with pytest.raises(StudentError) as caught:
        ada.share_to_gallery(make_picture(ada, "a fox", 99).status.trajectory_key, "s-ada", "Ada")
    assert caught.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_a_removed_name_cannot_share_and_the_teacher_calls_need_the_code(server):
    ada = client(server)
    key = make_picture(ada, "a watercolor fox", seed=1).status.trajectory_key
    server.call(lambda: server.classroom.remove_student("7B", "Ada"))
    with pytest.raises(StudentError) as caught:
        ada.share_to_gallery(key, "s-ada", "Ada")
    assert caught.value.code == grpc.StatusCode.PERMISSION_DENIED
    for wrong in ("", "owl-41"):
        for call in (lambda c: ada.submissions(c), lambda c: ada.clear_gallery(c),
                     lambda c: ada.set_present(c, True, ""), lambda c: ada.ask_quick_check(c, question="?"),
                     lambda c: ada.reveal_quick_check(c), lambda c: ada.submission_map(c)):  # fmt: skip
            with pytest.raises(StudentError) as caught:
                call(wrong)
            assert caught.value.code == grpc.StatusCode.PERMISSION_DENIED
    # Without the API token nothing answers.
    stranger = ClassroomClient(ClientSettings(inference_addr=server.address), class_name="7B")
    with pytest.raises(StudentError) as caught:
        stranger.gallery()
    assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED


def test_the_gallery_survives_a_restart_of_the_service(config):
    with running_server(config) as server:
        ada = client(server)
        item = ada.share_to_gallery(make_picture(ada, "a watercolor fox", seed=1).status.trajectory_key, "s-ada")
        ada.review_submission(CODE, item.id, approve=True)
    with running_server(config) as server:
        assert [i.id for i in client(server).gallery()] == [item.id]
    # Signed with the cache secret: a service with another secret keeps none of them.
    with running_server(config.model_copy(update={"cache_secret": "another secret"})) as server:
        assert client(server).gallery() == []


def test_a_flagged_picture_cannot_be_shared(config, tiny_dir, tmp_path):
    flagged_model = with_safety_checker(tiny_dir, tmp_path / "flagging", flag_everything=True)
    with running_server(config.model_copy(update={"tiny_dir": flagged_model, "safety_checker": "on"})) as server:
        ada = client(server)
        stream = make_picture(ada, "a watercolor fox", seed=1)
        assert stream.final.safety_flagged
        with pytest.raises(StudentError) as caught:
            ada.share_to_gallery(stream.status.trajectory_key, "s-ada", "Ada")
        assert caught.value.code == grpc.StatusCode.NOT_FOUND


def test_three_students_answer_the_teacher_sees_three_and_the_reveal_reaches_all(server):
    teacher = client(server)
    students = [("s-ada", "Ada"), ("s-ben", "Ben"), ("s-cai", "Cai")]
    asked = teacher.ask_quick_check(CODE, question="Which is a seed?", choices=("a number", "a colour"), answer=0)
    assert asked.answer == 0 and len(asked.choices) == 2
    seen = teacher.class_state().quick_check
    assert seen.id == asked.id and not seen.HasField("answer") and not seen.tally  # students don't see it yet
    for (student, name), choice in zip(students, (0, 0, 1), strict=True):
        assert client(server).answer_quick_check(asked.id, choice, student, name) == choice
    with pytest.raises(StudentError) as caught:  # one answer per student per question
        client(server).answer_quick_check(asked.id, 1, "s-ada", "Ada")
    assert caught.value.code == grpc.StatusCode.ALREADY_EXISTS
    live = teacher.quick_check(CODE)
    assert (live.answered, list(live.tally), live.answer) == (3, [2, 1], 0)
    teacher.reveal_quick_check(CODE)
    for _ in students:
        state = client(server).class_state().quick_check
        assert state.revealed and state.answer == 0 and list(state.tally) == [2, 1]
    with pytest.raises(StudentError) as caught:  # revealed: answers are closed
        client(server).answer_quick_check(asked.id, 0, "s-dee", "Dee")
    assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION
    teacher.close_quick_check(CODE)
    assert not teacher.class_state().HasField("quick_check")


def test_lesson_questions_ship_with_the_catalog_with_pictures_as_answers(server):
    teacher = client(server)
    listing = teacher.lessons("prompt-pairs")
    questions = {q.id: q for c in listing.collections for q in c.questions}
    question = questions["prompt-pairs/guidance-zero"]
    assert len(question.choices) == 3 and all(c.entry_id and c.request.prompt for c in question.choices)
    assert not hasattr(question, "answer")  # the answer stays with the service
    asked = teacher.ask_quick_check(CODE, lesson_question_id=question.id)
    right = asked.choices[asked.answer]
    assert right.request.guidance_scale == 0
    with pytest.raises(StudentError) as caught:
        teacher.ask_quick_check(CODE, question="Pick one", choices=("only one",), answer=0)
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_present_mode_reaches_a_watching_front_end_at_once(server):
    teacher, replica = client(server), client(server)
    entry = teacher.lessons("prompt-pairs").entries[0]
    seen: list[pb.ClassState] = []
    arrived = threading.Event()

    def watch() -> None:
        for state in replica.watch_class():
            seen.append(state)
            arrived.set()
            if state.present.step == 3:
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    assert arrived.wait(10) and not seen[0].present.leading
    teacher.set_present(CODE, True, entry.id, step=2)
    led = teacher.set_present(CODE, True, entry.id, step=3)
    watcher.join(10)
    assert not watcher.is_alive()
    last = seen[-1].present
    assert (last.leading, last.example_id, last.step, last.lesson) == (True, entry.id, 3, "change-one-word")
    assert last.example.prompt == entry.request.prompt and last.lead_id == led.present.lead_id
    assert teacher.set_present(CODE, False).present.leading is False
    assert replica.class_state().present.leading is False
    with pytest.raises(StudentError) as caught:
        teacher.set_present(CODE, True, "no-such-example")
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_a_watching_front_end_hears_the_stream_end_when_the_service_stops(config):
    with running_server(config) as server:
        replica = client(server)
        states = replica.watch_class()
        assert next(states).version >= 1
        ended = threading.Event()

        def read_on() -> None:
            for _ in states:  # ends without an error: the service closed it, it was not cut off
                pass
            ended.set()

        threading.Thread(target=read_on, daemon=True).start()
    assert ended.wait(10)


def test_a_picture_whose_prompt_the_blocklist_now_refuses_cannot_be_shared(config, tmp_path):
    with running_server(config) as server:
        key = make_picture(client(server), "a watercolor fox", seed=1).status.trajectory_key
    blocklist = tmp_path / "blocklist.txt"
    blocklist.write_text("fox\n")
    with running_server(config.model_copy(update={"blocklist": blocklist})) as server:
        with pytest.raises(StudentError) as caught:
            client(server).share_to_gallery(key, "s-ada", "Ada")
        assert caught.value.code == grpc.StatusCode.NOT_FOUND and "can't be used in class" in str(caught.value)
