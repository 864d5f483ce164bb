"""Lessons 9 and 10, and the teacher's side of lesson 10, in Spanish and French.

Lesson 9 runs against a real Shapes service (AppTest); lesson 10 and the teacher's controls
against the fake client of tests/unit/test_teach_page.py. The sentences checked are the
catalogs' own, written out here: a page that fell back to English, or a catalog entry lost,
fails. Numbers are the page's measured ones, written as the language writes them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from streamlit.testing.v1 import AppTest

from services.common.api import pb
from services.lessons.catalog import DEFAULT_CATALOG
from tests.frontend.conftest import point_the_front_end_at
from tests.support.frontend import page_file
from tests.support.servers import running_server
from tests.unit.test_teach_page import CODE, LOSSES, fake, png

__all__ = ["fake"]  # the fake client's fixture, used here by name
NBSP = "\u00a0"


def speak(language: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The session's language for the page and for the test's own thread (AppTest formats widgets there)."""
    import frontend.language

    monkeypatch.setattr(frontend.language, "current_language", lambda: language)


def words(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [i.value for i in at.info]
    parts += [s.value for s in at.subheader] + [t.value for t in at.title] + [h.value for h in at.header]
    parts += [s.value for s in at.success] + [e.value for e in at.error]
    return "\n".join(str(p) for p in parts)


def captions(at: AppTest) -> list[str]:
    return [caption for image in at.get("image") for caption in image.captions]


@pytest.mark.parametrize(
    ("language", "sentence"),
    [
        ("en", "The loss fell from 0.375 to 0.12 over 40 steps (averages of the first 4 and the last 4 steps)."),
        ("es", "La pérdida bajó de 0,375 a 0,12 a lo largo de 40 pasos (medias de los primeros 4 y los últimos 4 "
               "pasos)."),
        ("fr", "La perte est descendue de 0,375 à 0,12 sur 40 étapes (moyennes des 4 premières et des 4 dernières "
               "étapes)."),
    ],
)  # fmt: skip
def test_the_loss_sentence_writes_its_numbers_in_the_language(monkeypatch, language, sentence):
    from frontend.together.teach_sentences import loss_summary

    speak(language, monkeypatch)
    assert loss_summary(LOSSES) == sentence


LESSON_10 = {
    "es": {
        "title": "10. Enséñale una palabra nueva",
        "training": "El modelo está aprendiendo “heart”: paso **40 de 120**, 42 s hasta ahora. El conjunto de la "
        "clase tiene 12 dibujos.",
        "now": "**Ahora: entrenando.**",
        "closed": "no se pueden entregar dibujos hasta que termine",
        "facts": "las claves y los valores de la atención cruzada, como en el método llamado Custom Diffusion",
        "shapes": "solo conoce cuatro formas: circle, square, triangle y star",
        "pictures": "Las imágenes del modelo en el paso 30, pedidas (de izquierda a derecha): a red heart on the left",
        "drawing": "Todavía no se ha enseñado nada. La clase ha entregado 3 dibujos, 1 de ellos tuyos. Para enseñar "
        "hacen falta al menos 4; cada estudiante entrega como mucho 3, la clase como mucho 32.",
    },
    "fr": {
        "title": "10. Apprends-lui un nouveau mot",
        "training": f"Le modèle apprend “heart”{NBSP}: étape **40 sur 120**, 42 s jusqu'ici. L'ensemble de la classe "
        "compte 12 dessins.",
        "now": f"**Maintenant{NBSP}: entraînement en cours.**",
        "closed": "on ne peut plus rendre de dessin tant qu'il n'a pas fini",
        "facts": "les clés et les valeurs de l'attention croisée, comme dans la méthode appelée Custom Diffusion",
        "shapes": f"ne connaît que quatre formes{NBSP}: circle, square, triangle et star",
        "pictures": f"Les images du modèle à l'étape 30, demandées (de gauche à droite){NBSP}: a red heart on the left",
        "drawing": "Rien n'est encore appris. La classe a rendu 3 dessins, dont 1 de toi. Pour apprendre le mot, il en "
        f"faut au moins 4{NBSP}; chaque élève en rend au plus 3, la classe au plus 32.",
    },
}


@pytest.mark.parametrize("language", ["es", "fr"])
def test_lesson_10_speaks_the_language_while_drawing_and_training(fake, monkeypatch, language):
    speak(language, monkeypatch)
    want = LESSON_10[language]
    at = AppTest.from_file(str(page_file("teach_word")), default_timeout=30).run()
    assert not at.exception, [e.value for e in at.exception]
    said = words(at)
    assert want["title"] in said and want["facts"] in said and want["shapes"] in said
    assert want["drawing"] in said
    assert "Nothing taught yet" not in said and "Draw the new shape" not in said

    fake.state = pb.TeachingState(
        phase=pb.TEACHING_PHASE_TRAINING, word="heart", drawings=12, yours=2, step=40, total_steps=120,
        losses=LOSSES, samples_png=png(64), samples_step=30, seconds=41.6, teachable=True,
        samples_prompts=["a red heart on the left", "a blue heart"],
    )  # fmt: skip
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    said = words(at)
    assert want["training"] in said and want["now"] in said and want["closed"] in said
    assert any(want["pictures"] in c for c in captions(at)), captions(at)
    assert "The model is learning" not in said and "The loss" not in said


TEACHER = {
    "es": ("Enséñale una palabra nueva (lección 10)", "Quitar este dibujo", "Enseñar", "Entrenamiento parado.",
           "Paraste el entrenamiento con “heart” en el paso 3 de 40."),
    "fr": ("Apprenez-lui un nouveau mot (leçon 10)", "Retirer ce dessin", "Enseigner", "Entraînement arrêté.",
           "Vous avez arrêté l'entraînement sur “heart” à l'étape 3 sur 40."),
}  # fmt: skip


def _teacher_side() -> None:
    from frontend.together.teach_side import teach_a_word

    teach_a_word()


@pytest.mark.parametrize("language", ["es", "fr"])
def test_the_teacher_s_controls_speak_the_language_and_address_the_teacher(fake, monkeypatch, language):
    speak(language, monkeypatch)
    header, remove, teach, stopped, sentence = TEACHER[language]
    fake.drawings_in = [pb.ClassDrawing(drawing_id="d8", student_name="", png=png())]
    fake.state = pb.TeachingState(phase=pb.TEACHING_PHASE_TRAINING, word="heart", step=3, total_steps=40,
                                  teachable=True)  # fmt: skip
    at = AppTest.from_function(_teacher_side, default_timeout=30)
    at.session_state["teacher_code"] = CODE
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert header in words(at)
    assert at.button(key="teach-remove-d8").label == remove
    assert teach in [b.label for b in at.button]
    at.button(key="teach-stop").click().run()
    assert stopped in [s.value for s in at.success]
    fake.state = pb.TeachingState(phase=pb.TEACHING_PHASE_STOPPED, word="heart", step=3, total_steps=40,
                                  teachable=True)  # fmt: skip
    at.run()
    assert sentence in words(at)


LESSON_9 = {
    "es": [
        "9. De qué aprendió",
        "Shapes aprendió de **40.000 imágenes**",
        "así que vio cada una unas 4,8 veces: algunas más, unas pocas nunca",
        "El juez ve: a purple triangle on the left.",
        "Ninguna imagen de entrenamiento muestra a green square, an orange star ni a purple triangle",
        "Cuando se le pidió «a dog», una palabra que nunca aprendió, pintó una imagen de todos modos",
        "(Carlini et al. 2023, «Extracting Training Data from Diffusion Models»)",
    ],
    "fr": [
        "9. Ce dont il a appris",
        "Shapes a appris à partir de **40\u202f000 images**",  # French groups digits with a narrow space,
        f"donc il a vu chacune environ 4,8 fois{NBSP}: certaines plus, quelques-unes jamais",
        f"Le juge voit{NBSP}: a purple triangle on the left.",
        "Aucune image d'entraînement ne montre a green square, an orange star ou a purple triangle",
        f"Quand on lui a demandé «{NBSP}a dog{NBSP}», un mot qu'il n'a jamais appris, il a quand même peint une image",
        f"(Carlini et al. 2023, «{NBSP}Extracting Training Data from Diffusion Models{NBSP}»)",
    ],
}


@pytest.fixture(scope="module")
def shapes_server(settings):
    with running_server(settings.model_copy(update={"model": "shapes", "catalog": DEFAULT_CATALOG})) as server:
        yield server


@pytest.fixture
def shapes_env(shapes_server, monkeypatch) -> Iterator[str]:
    yield from point_the_front_end_at(shapes_server.address, monkeypatch)


@pytest.mark.parametrize("language", ["es", "fr"])
def test_lesson_9_speaks_the_language_with_its_measured_numbers(shapes_env, monkeypatch, language):
    speak(language, monkeypatch)
    at = AppTest.from_file(str(page_file("lessons/learned_from")), default_timeout=180).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    said = words(at)
    for sentence in LESSON_9[language]:
        assert sentence in said, sentence
    assert "learned from **" not in said and "Questions to argue about" not in said
    assert at.number_input(key="training-page").label.startswith({"es": "Página (de ", "fr": "Page (sur "}[language])
