"""The teacher's dashboard acts on what it shows: its buttons follow the same refresh as its numbers."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from streamlit.testing.v1 import AppTest

from services.common.api import pb
from services.common.client import StudentError
from tests.support.frontend import page_file
from tests.support.servers import ServerThread, client_for, running_server

CODE = "owl-42"


@pytest.fixture
def paused_class(settings, monkeypatch) -> Iterator[ServerThread]:
    """A service and a front end that know the teacher code, with generation paused: students wait."""
    from frontend.client import get_client

    config = settings.model_copy(update={"redis_url": "", "teacher_code": CODE, "max_batch_size": 1})
    with running_server(config) as server:
        monkeypatch.setenv("CLASSROOM_INFERENCE_ADDR", server.address)
        monkeypatch.setenv("CLASSROOM_TEACHER_CODE", CODE)
        get_client.clear()
        teacher = client_for(server.address)
        teacher.set_paused(CODE, True)
        yield server
        teacher.set_paused(CODE, False)
        teacher.close()
        get_client.clear()


def _students_wait(address: str, count: int) -> list[threading.Thread]:
    """`count` students each ask for a picture; the paused class keeps them waiting."""
    client = client_for(address)

    def ask(number: int) -> None:
        request = pb.GenerateRequest(prompt=f"a boat number {number}", seed=number, num_inference_steps=2)
        request.width = request.height = 64
        try:
            for _ in client.generate(request, f"student-{number}", name=f"Student {number}"):
                pass
        except StudentError:  # the teacher cleared the queue
            pass

    threads = [threading.Thread(target=ask, args=(n,), daemon=True) for n in range(count)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while len(client.classroom(CODE).jobs) < count:
        assert time.monotonic() < deadline, "the students' requests never reached the queue"
        time.sleep(0.1)
    return threads


def _teacher_page() -> AppTest:
    at = AppTest.from_file(str(page_file("teacher")), default_timeout=60).run()
    at.text_input[0].input(CODE)
    return at.button[0].click().run()


def _button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def test_clear_is_enabled_while_students_wait_and_says_how_many_it_cleared(paused_class):
    at = _teacher_page()
    assert not at.exception
    assert _button(at, "Clear the queue").disabled  # nobody waits yet

    threads = _students_wait(paused_class.address, 2)
    at.run()  # the dashboard's next refresh
    assert not at.exception
    waiting = next(m for m in at.metric if m.label == "Waiting")
    assert waiting.value == "2"
    assert not _button(at, "Clear the queue").disabled  # the button agrees with the number beside it

    _button(at, "Clear the queue").click().run()
    assert not at.exception and not at.error
    assert [t.value for t in at.toast] == ["Cleared 2 waiting picture(s); their students were told."]
    assert next(m for m in at.metric if m.label == "Waiting").value == "0"
    assert _button(at, "Clear the queue").disabled
    for thread in threads:
        thread.join(30)


def test_pause_and_resume_say_so(paused_class):
    at = _teacher_page()
    _button(at, "Resume generation").click().run()
    assert not at.exception
    assert [t.value for t in at.toast] == ["Generation resumed."]
    assert not paused_class.classroom.scheduler.paused
    _button(at, "Pause generation").click().run()
    assert [t.value for t in at.toast] == ["Generation paused."]
    assert paused_class.classroom.scheduler.paused
