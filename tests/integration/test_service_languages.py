"""The service's request checks reach the student in Spanish, through a real server on loopback.

The service writes each refusal in English (the status message) and sends its
template and arguments; the front end's `student_error` writes it again with the
Spanish catalog. Spanish is switched on as the front end does it, for one language.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from frontend.language import translate
from services.common import i18n
from services.common.client import ClassroomClient, ClientSettings, StudentError
from tests.integration.helpers import collect, request
from tests.support.servers import ServerThread, running_server

TOKEN = "the class's api token"
CODE = "owl-42"
LESSONS = Path(__file__).resolve().parents[1] / "support" / "lessons.yaml"


@pytest.fixture
def server(settings, fresh_redis) -> Iterator[ServerThread]:
    redis = fresh_redis("languages")
    config = settings.model_copy(
        update={"redis_url": redis.url, "teacher_code": CODE, "api_token": TOKEN, "catalog": LESSONS}
    )
    with running_server(config) as running:
        yield running


@pytest.fixture
def spanish() -> Iterator[None]:
    i18n.use_translator(lambda message: translate(message, "es"))
    try:
        yield
    finally:
        i18n.use_translator(lambda message: message)


def client(server: ServerThread) -> ClassroomClient:
    return ClassroomClient(ClientSettings(inference_addr=server.address, api_token=TOKEN), class_name="7B")


def refusal(call) -> StudentError:
    with pytest.raises(StudentError) as caught:
        call()
    return caught.value


def test_the_request_checks_the_gallery_and_the_quick_check_refuse_in_spanish(server, spanish):
    front_end = client(server)
    steps = refusal(lambda: collect(front_end.generate(request("a fox", num_inference_steps=999), "s-ana", name="Ana")))
    assert steps.code == grpc.StatusCode.INVALID_ARGUMENT
    assert str(steps) == "Los pasos deben estar entre 1 y 150 en este modelo; pediste 999."
    both = refusal(lambda: collect(front_end.generate(request("", seed=2**40), "s-ana", name="Ana")))
    assert str(both) == (
        f"Escribe un prompt: está vacío. La semilla debe ser un número entero del 0 al {2**32 - 1}; pediste {2**40}."
    )

    teacher = client(server)
    few = refusal(lambda: teacher.ask_quick_check(CODE, question="Which is a seed?", choices=("a number",)))
    assert str(few) == "Escribe de 2 a 6 respuestas."
    asked = teacher.ask_quick_check(CODE, question="Which is a seed?", choices=("a number", "a colour"), answer=0)
    choice = refusal(lambda: front_end.answer_quick_check(asked.id, 5, "s-ana", "Ana"))
    assert choice.code == grpc.StatusCode.INVALID_ARGUMENT and str(choice) == "Elige una de las 2 respuestas."
    gone = refusal(lambda: front_end.share_to_gallery("0" * 32, "s-ana", "Ana"))
    assert gone.code == grpc.StatusCode.NOT_FOUND and str(gone).startswith("Esta imagen no se puede compartir")


def test_in_english_the_status_message_is_the_services_own_sentence(server):
    front_end = client(server)
    steps = refusal(lambda: collect(front_end.generate(request("a fox", num_inference_steps=999), "s-ana", name="Ana")))
    assert str(steps) == "Steps must be between 1 and 150 on this model; you asked for 999."
