"""The service's request checks reach the student in Spanish and French, through a real server on loopback.

The service writes each refusal in English (the status message) and sends its
template and arguments; the front end's `student_error` writes it again with the
reader's catalog. A language is switched on as the front end does it, for one language.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from PIL import Image

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
    # One request may cost at most 4 standard pictures (25 steps at 512 px): 150 steps is too much work.
    config = settings.model_copy(
        update={
            "redis_url": redis.url,
            "teacher_code": CODE,
            "api_token": TOKEN,
            "catalog": LESSONS,
            "max_request_work": 4.0,
        }
    )
    with running_server(config) as running:
        yield running


@contextmanager
def speaking(code: str) -> Iterator[None]:
    i18n.use_translator(lambda message: translate(message, code))
    try:
        yield
    finally:
        i18n.use_translator(lambda message: message)


@pytest.fixture
def spanish() -> Iterator[None]:
    with speaking("es"):
        yield


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


def test_the_too_much_work_refusal_arrives_whole_in_spanish_and_french(server):
    """Each sentence a template of its own, with its numbers: 6 standard pictures; 100 steps, or 416 px, fit."""
    front_end = client(server)
    costly = request("a fox", num_inference_steps=150)
    with speaking("es"):
        spanish = refusal(lambda: collect(front_end.generate(costly, "s-ana", name="Ana")))
    assert spanish.code == grpc.StatusCode.INVALID_ARGUMENT
    assert str(spanish) == (
        "Esta imagen es demasiado trabajo para una sola petición: tardaría lo mismo que 6 imágenes normales "
        "(25 pasos a 512 x 512 píxeles), y una petición puede costar como máximo 4. "
        "Cabe en el límite si usas como máximo 100 pasos con este tamaño. "
        "Cabe en el límite si la haces de como máximo 416 x 416 píxeles con 150 pasos."
    )
    with speaking("fr"):
        french = refusal(lambda: collect(front_end.generate(costly, "s-ana", name="Ana")))
    assert str(french) == (
        "Cette image demande trop de travail pour une seule demande\u00a0: elle prendrait autant de temps que "
        "6 images normales (25 étapes à 512 x 512 pixels), et une demande peut en coûter au plus 4. "
        "Elle tient dans la limite si tu utilises au plus 100 étapes à cette taille. "
        "Elle tient dans la limite si tu la fais d'au plus 416 x 416 pixels avec 150 étapes."
    )
    english = refusal(lambda: collect(front_end.generate(costly, "s-ana", name="Ana")))
    assert str(english).startswith("This picture is too much work for one request: it would take as long as 6")
    assert str(english).endswith("It fits if you make it at most 416 x 416 pixels at 150 steps.")


def blank_png(side: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (side, side), "white").save(out, format="PNG")
    return out.getvalue()


def test_lesson_10s_drawing_and_word_checks_refuse_in_the_readers_language(settings, fresh_redis):
    """A student's drawing is refused in tu-French and tú-Spanish; the teacher's word in vous-French."""
    redis = fresh_redis("teaching-languages")
    config = settings.model_copy(update={"model": "shapes", "redis_url": redis.url, "teacher_code": CODE})
    with running_server(config) as shapes:
        front_end = ClassroomClient(ClientSettings(inference_addr=shapes.address), class_name="7B")
        try:
            with speaking("fr"):
                empty = refusal(lambda: front_end.submit_drawing(blank_png(256), "s-ana", name="Ana"))
                large = refusal(lambda: front_end.submit_drawing(blank_png(300), "s-ana", name="Ana"))
                word = refusal(lambda: list(front_end.teach_word(CODE, "he4rt")))
            with speaking("es"):
                unread = refusal(lambda: front_end.submit_drawing(b"GIF89a not a png", "s-ana", name="Ana"))
                long_word = refusal(lambda: list(front_end.teach_word(CODE, "a" * 25)))
        finally:
            front_end.close()
    assert empty.code == grpc.StatusCode.INVALID_ARGUMENT
    assert str(empty) == (
        "Ce dessin est presque vide. Dessine la forme avec un trait qui en fait tout le tour, puis rends-le."
    )
    assert str(large) == "Ce dessin est trop grand\u00a0: un dessin peut faire au plus 256 x 256 pixels."
    assert str(word) == (
        "«\u00a0he4rt\u00a0» doit être un seul mot, fait uniquement de lettres de a à z\u00a0: "
        "sans espaces, chiffres ni signes."
    )
    assert str(unread) == "No se pudo leer este dibujo. Dibuja en el lienzo y vuelve a pulsar Entregar."
    assert str(long_word) == (f"«{'a' * 20}…» es demasiado larga: una palabra nueva tiene como máximo 20 letras.")
