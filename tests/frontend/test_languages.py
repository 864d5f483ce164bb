"""Every converted page in Spanish and French (AppTest, a real service): the class's language, then the student's own.

The sentences checked are the catalogs' own, read from the page as shown: a page that
fell back to English, or a catalog entry lost, fails here.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from streamlit.testing.v1 import AppTest

from tests.frontend.conftest import ROOT
from tests.support.frontend import page_file
from tests.support.servers import ServerThread, running_server

CODE = "owl-42"
APP = str(ROOT / "frontend" / "app.py")


@pytest.fixture
def class_server(settings, fresh_redis, monkeypatch) -> Iterator[ServerThread]:
    """A service with the teacher code and a Redis of its own (the class's language lives there)."""
    from frontend.client import get_client
    from frontend.stream.store import lesson_store
    from frontend.together.student_side import class_watcher

    config = settings.model_copy(update={"redis_url": fresh_redis("languages").url, "teacher_code": CODE})
    with running_server(config) as server:
        monkeypatch.setenv("CLASSROOM_INFERENCE_ADDR", server.address)
        monkeypatch.setenv("CLASSROOM_TEACHER_CODE", CODE)
        for cached in (get_client, lesson_store, class_watcher):
            cached.clear()
        yield server
        for cached in (get_client, lesson_store, class_watcher):
            cached.clear()


def text_of(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [i.value for i in at.info]
    parts += [s.value for s in at.success] + [w.value for w in at.warning] + [t.value for t in at.title]
    parts += [e.value for e in at.error] + [b.label for b in at.button] + [s.label for s in at.selectbox]
    parts += [r.label for r in at.radio]
    parts += [t.label for t in at.text_input] + [t.label for t in at.text_area] + [n.label for n in at.number_input]
    parts += [s.label for s in at.slider]
    parts += [link.proto.label for link in at.get("page_link")]
    return "\n".join(str(p) for p in parts)


def in_language(path: str, language: str) -> AppTest:
    at = AppTest.from_file(path, default_timeout=120)
    at.session_state["language"] = language
    return at.run()


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


WELCOME = {
    "es": ["Aquí puedes ver cómo lo hace, paso a paso", "**3. Del ruido a la imagen**", "El servidor de imágenes"],
    "fr": ["Ici, tu peux le regarder faire, étape par étape", "**3. Du bruit à l'image**", "Le serveur d'images"],
}
PLAYGROUND = {
    "es": ["Laboratorio", "Prompt negativo (opcional)", "Generar", "Semilla (vacía: una al azar)"],
    "fr": ["Bac à sable", "Prompt négatif (facultatif)", "Générer", "Graine (vide\u00a0: une au hasard)"],
}
GALLERY = {
    "es": ["Galería de la clase", "Todavía no hay nada en la galería."],
    "fr": ["Galerie de la classe", "Rien dans la galerie pour l'instant."],
}


@pytest.mark.parametrize("language", ["es", "fr"])
def test_the_welcome_playground_and_gallery_speak_the_language(class_server, language):
    at = in_language(APP, language)
    assert_clean(at)
    text = text_of(at)
    for sentence in WELCOME[language]:
        assert sentence in text
    assert "with the **real** model's numbers" not in text  # no English left beside it
    at = in_language(str(page_file("playground")), language)
    assert_clean(at)
    for sentence in PLAYGROUND[language]:
        assert sentence in text_of(at)
    # A picture made in the language: its heading and its status speak it; numbers are the language's.
    at.slider[0].set_value(2)
    for box in at.selectbox:
        if box.label in ("Ancho", "Alto", "Largeur", "Hauteur"):
            box.set_value(64)
    at.number_input[0].set_value(5)
    next(b for b in at.button if b.label == PLAYGROUND[language][2]).click().run()
    assert_clean(at)
    assert not at.error, [e.value for e in at.error]
    assert {"es": "semilla 5", "fr": "graine 5"}[language] in next(h.value for h in at.subheader)
    downloads = [b.label for b in at.get("download_button")]
    assert downloads[0] == {"es": "Descargar la imagen (PNG)", "fr": "Télécharger l'image (PNG)"}[language]
    at = in_language(str(page_file("gallery")), language)
    assert_clean(at)
    for sentence in GALLERY[language]:
        assert sentence in text_of(at)
    at = in_language(str(page_file("model")), language)
    assert_clean(at)
    model = {"es": ("El modelo: Tiny", "Sus números"), "fr": ("Le modèle\u00a0: Tiny", "Ses nombres")}[language]
    assert model[0] in text_of(at) and model[1] in [h.value for h in at.subheader]


@pytest.mark.parametrize("language", ["es", "fr"])
def test_sign_in_speaks_the_language_and_so_does_a_wrong_code(class_server, monkeypatch, language):
    monkeypatch.setenv("CLASSROOM_CLASS_CODE", "blue-7")
    at = in_language(APP, language)
    assert_clean(at)
    text = text_of(at)
    welcome = {"es": "¡Hola! Escribe el código de clase", "fr": "Bienvenue\u00a0! Tape le code de classe"}
    assert welcome[language] in text
    code, name = at.text_input
    assert code.label == {"es": "Código de la clase", "fr": "Code de la classe"}[language]
    code.input("blue-8")
    name.input("Zoë")
    at.button[0].click().run()
    wrong = {
        "es": "Ese código de clase no es correcto. Pídeselo a tu profe.",
        "fr": "Ce code de classe n'est pas le bon. Demande-le à ton prof.",
    }
    assert [e.value for e in at.error] == [wrong[language]]


def _class_language_heard(language: str) -> None:
    from frontend.together.student_side import class_watcher

    deadline = time.monotonic() + 30
    while (class_watcher().state() or None) is None or class_watcher().state().language != language:
        assert time.monotonic() < deadline, "the class's language never reached the front end"
        time.sleep(0.1)


def test_the_class_language_is_the_default_and_the_students_own_pick_wins(class_server):
    from frontend.client import get_client

    english = AppTest.from_file(APP, default_timeout=120).run()
    assert "with the **real** model's numbers" in text_of(english)  # nobody chose: English

    state = get_client().set_class_language(CODE, "fr")  # the teacher's choice, for the whole class
    assert state.language == "fr"
    _class_language_heard("fr")
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert_clean(at)
    assert "Ici, tu peux le regarder faire, étape par étape" in text_of(at)
    (picker,) = [box for box in at.sidebar.radio if box.key == "language_picker"]
    assert picker.value == "fr"  # the picker shows the class's language until the student picks
    # Words only (a screen reader reads the label as it is written; no emoji that may draw as a box):
    # the language's own word, and English's for a student who cannot read it.
    assert picker.label == "Langue · Language"

    picker.set_value("es").run()  # the student's own pick wins over the class's
    assert "Aquí puedes ver cómo lo hace, paso a paso" in text_of(at)
    assert at.query_params["lang"] in ("es", ["es"])  # kept in the address: a reload keeps it
    reloaded = AppTest.from_file(APP, default_timeout=120)
    reloaded.query_params["lang"] = "es"
    assert "Aquí puedes ver cómo lo hace, paso a paso" in text_of(reloaded.run())

    picker = next(box for box in at.sidebar.radio if box.key == "language_picker")
    picker.set_value("en").run()  # English picked over the class's French: English
    assert "with the **real** model's numbers" in text_of(at)

    # Back to English for the class: stored as none.
    assert get_client().set_class_language(CODE, "en").language == ""


def test_a_language_the_classroom_does_not_ship_is_refused(class_server):
    from frontend.client import StudentError, get_client

    with pytest.raises(StudentError) as refused:
        get_client().set_class_language(CODE, "xx")
    assert "Choose one of the languages this classroom speaks" in str(refused.value)
    with pytest.raises(StudentError):
        get_client().set_class_language("not-the-code", "es")  # only the teacher sets it


def test_the_teacher_sets_the_class_language_on_the_teacher_page(class_server):
    from frontend.client import get_client

    at = AppTest.from_file(str(page_file("teacher")), default_timeout=120)
    at.session_state["teacher_code"] = CODE
    at.run()
    assert_clean(at)
    (picker,) = [box for box in at.selectbox if box.key == "teacher-class-language"]
    assert picker.label == "The class's language" and picker.value == "en"
    picker.set_value("es").run()
    assert_clean(at)
    assert get_client().class_state().language == "es"  # kept by the service, for every student's page
    _class_language_heard("es")
    student = AppTest.from_file(APP, default_timeout=120).run()
    assert "Aquí puedes ver cómo lo hace, paso a paso" in text_of(student)
