"""Lessons 7 and 8 in Spanish and French (AppTest, a real service, tiny model).

The sentences checked are the catalogs' own, written out here: a page that fell back to
English, or a catalog entry lost, fails. The sourced facts (Attend-and-Excite, Chefer et al.,
2023; the 64/32/16/8 rule; Prompt-to-Prompt) must reach the page as the English gives them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.frontend.conftest import catalog_server, point_the_front_end_at
from tests.support.frontend import page_file
from tests.support.servers import ServerThread

CATALOG = """
version: 1
collections:
  - id: attention-maps
    lesson: which-word-paints-where
    title: Which word paints where
    request: {num_inference_steps: 4, width: 64, height: 64, include: [cross_attention]}
    prompts:
      barn: a red barn in a green field
    seeds: [1]
  - id: branch-at-step
    lesson: when-does-the-picture-decide
    title: When does the picture decide?
    request: {scheduler: ddim, num_inference_steps: 4, guidance_scale: 7.5, width: 64, height: 64}
    prompts:
      fox: a red fox sitting in a snowy forest
    branch: {prompt: "a white owl sitting in a flower meadow"}
    branch_steps: [0, 2, 4]
    seeds: [1]
"""
NBSP = "\u00a0"


@pytest.fixture(scope="module")
def lessons_server(settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    catalog: Path = tmp_path_factory.mktemp("catalog") / "lessons.yaml"
    catalog.write_text(CATALOG)
    with catalog_server(settings, catalog, entries=4) as server:
        yield server


@pytest.fixture
def lessons_env(lessons_server, monkeypatch) -> Iterator[str]:
    yield from point_the_front_end_at(lessons_server.address, monkeypatch)


def in_language(name: str, language: str, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    """The page in `language`, picked as the student picks it (the session's pick).

    AppTest formats a widget's options again in the test's own thread, where no session is and
    `_` speaks English: the language is fixed for the test's thread too, so a picker whose options
    are translated (lesson 7's prompt source and examples) still finds its value on the next run.
    """
    import frontend.language

    monkeypatch.setattr(frontend.language, "current_language", lambda: language)
    at = AppTest.from_file(str(page_file(name)), default_timeout=300)
    at.session_state["language"] = language
    return at.run()


def text_of(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [t.value for t in at.title]
    parts += [s.value for s in at.subheader] + [i.value for i in at.info] + [w.value for w in at.warning]
    return "\n".join(str(p) for p in parts)


def captions(at: AppTest) -> list[str]:
    return [caption for image in at.get("image") for caption in image.captions]


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


LESSON_7 = {
    "es": {
        "title": "7. Qué palabra pinta dónde",
        "sentences": [
            "La UNet lee el prompt mediante **atención cruzada**.",
            "**Elige un fragmento del prompt** para ver dónde lo lee la UNet:",
            "(un reparto uniforme necesitaría el 50" + NBSP + "%)",
            "(Attend-and-Excite, Chefer et al., 2023)",
            "DAAM (Tang et al., 2023)",
            "cuyas cuadrículas tienen 64, 32, 16 y 8 posiciones de ancho",
        ],
        "captions": ["«field», sumado sobre los 4 pasos", "‹fin›, el token que cierra el prompt, sumado"],
        "radio": ("Prompt", ["Un ejemplo de la lección", "Tu propio prompt"]),
        "expander": "Cada resolución por separado",
    },
    "fr": {
        "title": "7. Quel mot peint où",
        "sentences": [
            "L'UNet lit le prompt par l'**attention croisée**.",
            "**Choisis un morceau du prompt** pour voir où l'UNet le lit" + NBSP + ":",
            "(une répartition égale demanderait 50" + NBSP + "%)",
            "(Attend-and-Excite, Chefer et al., 2023)",
            "DAAM (Tang et al., 2023)",
            "dont les grilles font 64, 32, 16 et 8 positions de large",
        ],
        "captions": ["«field», sommée sur les 4 étapes", "‹fin›, le token qui ferme le prompt, sommé"],
        "radio": ("Prompt", ["Un exemple de la leçon", "Ton propre prompt"]),
        "expander": "Chaque résolution à part",
    },
}


@pytest.mark.parametrize("language", ["es", "fr"])
def test_lesson_7_speaks_the_language_with_its_facts(lessons_env, monkeypatch, language):
    at = in_language("attention", language, monkeypatch)
    assert_clean(at)
    want = LESSON_7[language]
    text = text_of(at)
    assert want["title"] in text
    for sentence in want["sentences"]:
        assert sentence in text, sentence
    for caption in want["captions"]:
        assert caption in captions(at), captions(at)
    assert (at.radio[0].label, list(at.radio[0].options)) == want["radio"]
    assert want["expander"] in [e.proto.label for e in at.expander]
    # The prompt's pieces stay the model's own (English) words; the page around them does not.
    assert list(at.pills[0].options) == ["a", "red", "barn", "in", "a", "green", "field"]
    for english in ("which of you matters here?", "Choose a piece of the prompt", "Who gets the attention"):
        assert english not in text

    # The student's own prompt (the option's value is the English msgid the session keeps): the form speaks too.
    at.radio[0].set_value("Your own prompt").run()
    assert_clean(at)
    labels = [t.label for t in at.text_input] + [n.label for n in at.number_input] + [b.label for b in at.button]
    assert (
        labels == {"es": ["Tu prompt", "Semilla", "Dibújalo"], "fr": ["Ton prompt", "Graine", "Dessine-le"]}[language]
    )


LESSON_8 = {
    "es": {
        "title": "8. ¿Cuándo se decide la imagen?",
        "intro": "De **a red fox sitting in a snowy forest** a **a white owl sitting in a flower meadow**, con el "
        "cambio en el paso k de 4 (semilla 1).",
        "captions": ["el nuevo prompt desde el principio", "k = 2", "sin cambio"],
        "columns": ["cambio en el paso", "distancia a la original", "distancia a la del nuevo prompt"],
        "never": "nunca",
        "source": "(Prompt-to-Prompt, Hertz et al., 2022)",
        "button": "Generar las dos",
        "shared": "Las dos ejecuciones comparten exactamente sus primeros **3** pasos, como debe ser: k = 3, así "
        "que el nuevo prompt se lee a partir del paso 4.",
    },
    "fr": {
        "title": "8. Quand l'image se décide-t-elle" + NBSP + "?",
        "intro": "De **a red fox sitting in a snowy forest** à **a white owl sitting in a flower meadow**, avec le "
        "changement à l'étape k sur 4 (graine 1).",
        "captions": ["le nouveau prompt dès le début", "k = 2", "jamais changé"],
        "columns": ["changé à l'étape", "distance à l'originale", "distance à celle du nouveau prompt"],
        "never": "jamais",
        "source": "(Prompt-to-Prompt, Hertz et al., 2022)",
        "button": "Générer les deux",
        "shared": "Les deux générations partagent exactement leurs **3** premières étapes, comme il se doit"
        + NBSP
        + ": k = 3, donc le nouveau prompt est lu à partir de l'étape 4.",
    },
}


@pytest.mark.parametrize("language", ["es", "fr"])
def test_lesson_8_speaks_the_language_and_counts_the_shared_steps(lessons_env, monkeypatch, language):
    at = in_language("branch", language, monkeypatch)
    assert_clean(at)
    want = LESSON_8[language]
    text = text_of(at)
    assert want["title"] in text
    assert want["intro"] in text  # the prompts stay as the model learned them, English
    assert captions(at)[:3] == want["captions"]
    table = at.dataframe[0].value
    assert list(table.columns) == want["columns"]
    assert list(table[want["columns"][0]]) == ["0", "2", want["never"]]
    assert want["source"] in text
    assert "switched at step k" not in text and "What each picture kept" not in text

    form = at.text_input
    form[0].input("a lighthouse at dusk")
    form[1].input("a castle at noon")
    at.slider[0].set_value(3)
    at.number_input[0].set_value(5)
    next(b for b in at.button if b.label == want["button"]).click().run()
    assert_clean(at)
    assert want["shared"] in text_of(at)
