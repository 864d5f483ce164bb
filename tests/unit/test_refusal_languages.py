"""The service's refusals reach the student in the reader's language.

A refusal sends its English sentence (as older clients and logs read it) and, in its
ErrorInfo's metadata, the template it was written from and the arguments;
`student_error` writes the sentence again with the front end's catalogs. Spanish is
switched on as the front end does it (`services.common.i18n.use_translator`), for one
language instead of a session's.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from frontend.language import translate
from services.common import i18n
from services.common.errors import student_error
from services.common.text import name_problem
from services.inference.refusals import AddressBusy, NameTaken, QueueFull, RateLimited, Refusal, RequestError
from services.inference.teaching.refusals import TrainingNow


class RefusedCall(grpc.RpcError):
    """A failed call as the client sees it, carrying the status the service aborted with."""

    def __init__(self, refusal: Refusal) -> None:
        self.status = refusal.status()

    def code(self) -> grpc.StatusCode:
        return self.status.code

    def details(self) -> str:
        return self.status.details

    def trailing_metadata(self) -> tuple:
        return self.status.trailing_metadata


@pytest.fixture
def spanish() -> Iterator[None]:
    i18n.use_translator(lambda message: translate(message, "es"))
    try:
        yield
    finally:
        i18n.use_translator(lambda message: message)


def info(refusal: Refusal) -> error_details_pb2.ErrorInfo:
    (found,) = [detail for detail in refusal.details() if isinstance(detail, error_details_pb2.ErrorInfo)]
    return found


def test_a_refusal_sends_its_template_and_arguments_beside_the_english_sentence():
    refusal = AddressBusy(3)
    assert refusal.sentence.startswith("This computer's network address already has 3 pictures being made")
    metadata = dict(info(refusal).metadata)
    assert metadata["held"] == "3"
    assert metadata["template"].startswith("This computer's network address already has {held} pictures")
    queue = dict(info(QueueFull(waiting=12, retry_after_s=90)).metadata)
    assert queue == {
        "template": "The class queue is full right now ({waiting} pictures are waiting).",
        "template.1": "Please try again in about {minutes} minute(s).",
        "waiting": "12",
        "minutes": "2",
    }


def test_a_refusal_with_a_sentence_written_another_way_sends_no_template():
    assert not [
        d
        for d in RequestError([("prompt", "Type a prompt first.")]).details()
        if isinstance(d, error_details_pb2.ErrorInfo)
    ]


def test_student_error_writes_the_services_sentence_in_spanish(spanish: None):
    assert str(student_error(RefusedCall(AddressBusy(3)))).startswith(
        "La dirección de red de este ordenador ya tiene 3 imágenes en marcha o en espera"
    )
    assert str(student_error(RefusedCall(RateLimited(1)))) == (
        "Estás creando imágenes más rápido de lo que permite la clase. Vuelve a intentarlo dentro de 1 segundo."
    )
    named = student_error(RefusedCall(NameTaken("Ana {0}")))  # the student's name stays as typed, braces and all
    assert str(named).startswith("Alguien de esta clase ya ha entrado como 'Ana {0}' en otro ordenador")
    assert str(student_error(RefusedCall(TrainingNow()))).startswith("El modelo de la clase está aprendiendo")
    assert str(student_error(RefusedCall(RequestError([("prompt", "Type a prompt first.")])))) == "Type a prompt first."


def test_student_error_keeps_the_english_sentence_in_english():
    for refusal in (AddressBusy(3), RateLimited(2.5), NameTaken("Ana"), QueueFull(1, 30, classroom="c")):
        assert str(student_error(RefusedCall(refusal))) == refusal.sentence
    assert RateLimited(2.5).sentence == (
        "You are making pictures faster than the class allows. Please try again in 3 seconds."
    )


def test_a_template_the_client_cannot_fill_falls_back_to_the_english(spanish: None):
    refusal = AddressBusy(3)
    broken = info(refusal)
    del broken.metadata["held"]  # a template naming an argument the service did not send
    packed = any_pb2.Any()
    packed.Pack(broken)
    call = RefusedCall(refusal)
    call.status = rpc_status.to_status(status_pb2.Status(code=refusal.code, message=refusal.sentence, details=[packed]))
    assert str(student_error(call)) == refusal.sentence


def test_the_display_name_checks_speak_the_readers_language_and_keep_their_template(spanish: None):
    problem = name_problem("x" * 41)
    assert problem == "Un nombre puede tener como máximo 40 caracteres."
    assert problem is not None and problem.template == "A name may be at most {limit} characters long."
    assert problem.args == {"limit": "40"}


def test_the_request_checks_and_the_gallerys_refusals_arrive_in_spanish(spanish: None):
    from services.inference.refusals import NotShareable
    from services.inference.together.quickcheck import teachers_own
    from services.inference.together.together import FLAGGED

    assert str(student_error(RefusedCall(NotShareable(FLAGGED)))) == (
        "El filtro de seguridad marcó esta imagen, así que no se puede compartir."
    )
    with pytest.raises(RequestError) as caught:
        teachers_own("Which is a seed?", ["a number"], answer=3)
    assert str(student_error(RefusedCall(caught.value))) == (
        "Escribe de 2 a 6 respuestas. Marca cuál es la respuesta correcta."
    )


@pytest.fixture
def french() -> Iterator[None]:
    i18n.use_translator(lambda message: translate(message, "fr"))
    try:
        yield
    finally:
        i18n.use_translator(lambda message: message)


def too_much_work() -> RequestError:
    """Shapes' costliest request (20 standard pictures, with the attention maps) against a ceiling of 8."""
    from services.common.api import pb
    from services.inference.classroom.validation import Limits, check_generate
    from services.inference.diffusion.probes import default_probes
    from services.inference.settings import InferenceSettings

    settings = InferenceSettings(model="shapes", max_request_work=8.0)
    shapes_default = default_probes(True)
    costly = pb.GenerateRequest(prompt="a red circle", num_inference_steps=100, width=128, height=128)
    costly.include.paths.extend([*shapes_default, "cross_attention"])
    limits = Limits.for_model(settings, 64, max_steps=100)
    with pytest.raises(RequestError) as caught:
        check_generate(costly, settings, 64, limits=limits, default_include=shapes_default)
    return caught.value


def test_the_too_much_work_refusal_is_whole_sentences_each_with_its_numbers():
    metadata = dict(info(too_much_work()).metadata)
    assert metadata["template"].startswith("This picture is too much work for one request: it would take as long as")
    assert metadata["template.1"] == "It fits if you use at most {most_steps} steps at this size."
    assert metadata["template.2"] == "It fits if you make it at most {side} x {side} pixels at {steps} steps."
    assert metadata["template.3"] == "It is less work if you leave out the attention maps."
    assert "template.4" not in metadata
    arguments = {key: value for key, value in metadata.items() if not key.startswith("template")}
    assert arguments == {
        "price": "20",
        "standard_steps": "25",
        "native": "64",
        "ceiling": "8",
        "most_steps": "40",
        "side": "80",
        "steps": "100",
    }


def test_the_too_much_work_refusal_arrives_whole_in_spanish(spanish: None):
    assert str(student_error(RefusedCall(too_much_work()))) == (
        "Esta imagen es demasiado trabajo para una sola petición: tardaría lo mismo que 20 imágenes normales "
        "(25 pasos a 64 x 64 píxeles), y una petición puede costar como máximo 8. "
        "Cabe en el límite si usas como máximo 40 pasos con este tamaño. "
        "Cabe en el límite si la haces de como máximo 80 x 80 píxeles con 100 pasos. "
        "Es menos trabajo si quitas los mapas de atención."
    )


def test_the_costly_probes_are_named_in_french_one_or_both(french: None):
    from services.common.include_mask import Probe
    from services.inference.classroom.sentences import LEAVE_OUT

    assert set(LEAVE_OUT) == {frozenset({Probe.CROSS_ATTENTION}), frozenset({Probe.DECODED_X0_PREVIEW}),
                              frozenset({Probe.CROSS_ATTENTION, Probe.DECODED_X0_PREVIEW})}  # fmt: skip
    both = LEAVE_OUT[frozenset({Probe.CROSS_ATTENTION, Probe.DECODED_X0_PREVIEW})]
    assert translate(both, "fr") == (
        "C'est moins de travail si tu enlèves les cartes d'attention et l'image décodée à chaque étape."
    )
    assert str(student_error(RefusedCall(too_much_work()))).endswith(
        "Elle tient dans la limite si tu la fais d'au plus 80 x 80 pixels avec 100 étapes. "
        "C'est moins de travail si tu enlèves les cartes d'attention."
    )


def test_a_drawing_refused_arrives_in_french(french: None):
    from services.inference.teaching import drawings

    with pytest.raises(drawings.NotADrawing) as caught:
        drawings.read_png(bytes(drawings.MAX_BYTES + 1))
    sent = RequestError([("png", caught.value.sentence)])  # as Teaching.submit sends it
    assert (caught.value.sentence.template, caught.value.sentence.args) == (drawings.TOO_LARGE, {"side": "256"})
    assert str(student_error(RefusedCall(sent))) == (
        "Ce dessin est trop grand\u00a0: un dessin peut faire au plus 256 x 256 pixels."
    )


def test_a_scheduler_shapes_card_leaves_out_is_refused_in_spanish_and_french():
    """The card's sentence (English data in its classroom.json) is sent as its own template; the catalogs hold it."""
    from pathlib import Path

    from services.common.api import pb
    from services.inference.classroom.validation import Limits, check_generate
    from services.inference.diffusion.models import ModelCard
    from services.inference.settings import InferenceSettings

    card = ModelCard.read(Path(__file__).resolve().parents[2] / "services" / "shapes" / "model")
    settings = InferenceSettings(model="shapes")
    limits = Limits.for_model(settings, 64, card.max_steps, card.schedulers_left_out)
    with pytest.raises(RequestError) as caught:
        check_generate(pb.GenerateRequest(prompt="a red circle", scheduler="lms"), settings, 64, limits=limits)
    assert caught.value.sentence == dict(card.schedulers_left_out)["lms"]  # the English as the card writes it
    for code, start, end in (
        (
            "es",
            "LMS no se ofrece en Shapes: con guidance 7,5, la suposición guiada de este modelo oscila",
            "DDIM, Euler, Euler Ancestral y DPM-Solver++ sí la siguen.",
        ),
        (
            "fr",
            "LMS n'est pas proposé sur Shapes\u00a0: avec le guidage à 7,5, la supposition guidée de ce modèle",
            "DDIM, Euler, Euler Ancestral et DPM-Solver++, eux, la suivent.",
        ),
    ):
        i18n.use_translator(lambda message, code=code: translate(message, code))
        try:
            said = str(student_error(RefusedCall(caught.value)))
        finally:
            i18n.use_translator(lambda message: message)
        assert said.startswith(start) and said.endswith(end)
