"""The catalogs: complete, faithful to their placeholders, up to date with the code, and nothing shown escapes them.

`NOT_YET_CONVERTED` names the front end's modules whose words are still English
only: the test checks every other module, and fails for a listed module that no
longer needs listing, so the list only shrinks. `BEYOND_THE_WALK` names modules
whose words reach the page other than as an argument of a Streamlit call (chart
titles, text alternatives, the player's own labels, sentences kept in constants):
the walk cannot see those, so they are listed by hand until converted.
"""

from __future__ import annotations

import ast
import datetime as dt
import importlib.util
import re
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po

from frontend.language import LOCALES, catalog_path, date, ngettext, number, percent, translate
from services.common.i18n import LANGUAGES, SOURCE_LANGUAGE

ROOT = Path(__file__).resolve().parents[2]
TRANSLATED = [code for code in LANGUAGES if code != SOURCE_LANGUAGE]

# Modules still to convert (paths under frontend/); the later sessions empty this list.
NOT_YET_CONVERTED: set[str] = set()

# Not yet converted, with words the walk below cannot see (they are shown through helpers, charts or the player).
BEYOND_THE_WALK: set[str] = set()

# Calls that put words on the page (on st, a column, a slot, the sidebar...), and their arguments that are words.
SHOWN = {
    "write", "markdown", "caption", "header", "subheader", "title", "text", "info", "warning", "error", "success",
    "toast", "button", "form_submit_button", "download_button", "link_button", "page_link", "selectbox", "radio",
    "multiselect", "text_input", "text_area", "number_input", "slider", "select_slider", "checkbox", "toggle",
    "expander", "tabs", "metric", "progress", "spinner", "Page", "set_page_config", "image", "popover",
}  # fmt: skip
LOGGERS = {"log", "logger", "logging", "warnings"}
WORD_KEYWORDS = {"label", "body", "placeholder", "help", "caption", "title", "text", "alt", "page_title", "value"}
_LETTERS = re.compile(r"[A-Za-z]{2,}")
_PLACEHOLDER = re.compile(r"\{[^{}]*\}|%(?:\([^)]*\))?[sd]")


def _catalog(code: str) -> Catalog:
    with catalog_path(code).open("rb") as po:
        return read_po(po, locale=code)


def _template() -> Catalog:
    with (LOCALES / "messages.pot").open("rb") as pot:
        return read_po(pot)


def _update_tool():
    spec = importlib.util.spec_from_file_location("catalog_update", LOCALES / "update.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_template_is_up_to_date_with_the_code():
    update = _update_tool()
    written = (LOCALES / "messages.pot").read_text()
    assert update.rendered(update.extracted(), no_location=False, include_lineno=False) == written, (
        "run `.venv/bin/python frontend/locales/update.py`, then translate the new sentences"
    )


def test_every_language_has_a_catalog_and_every_catalog_a_language():
    shipped = {path.parent.parent.name for path in LOCALES.glob("*/LC_MESSAGES/messages.po")}
    assert shipped == set(TRANSLATED)


@pytest.mark.parametrize("code", TRANSLATED)
def test_every_sentence_is_translated_with_the_same_placeholders(code):
    template, catalog = _template(), _catalog(code)
    wanted = {message.id for message in template if message.id}
    assert wanted == {message.id for message in catalog if message.id}, "run frontend/locales/update.py"
    for message in catalog:
        if not message.id:
            continue
        assert not message.fuzzy, message.id
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        assert all(strings), f"{code}: not translated: {message.id!r}"
        expected = sorted(_PLACEHOLDER.findall(ids[-1]))
        for string in strings:
            assert sorted(_PLACEHOLDER.findall(string)) == expected, f"{code}: {message.id!r} -> {string!r}"
            string.format(**{name.strip("{}"): "x" for name in _PLACEHOLDER.findall(string) if name[0] == "{"})


def test_a_sentence_not_in_the_catalogs_stays_as_written():
    assert translate("Playground", "es") == "Laboratorio"
    assert translate("A sentence of the service's", "es") == "A sentence of the service's"
    assert translate("Playground", SOURCE_LANGUAGE) == "Playground"


def test_numbers_and_dates_are_written_as_each_language_writes_them():
    assert [number(12288.5, language=code) for code in ("en", "es", "fr")] == ["12,288.5", "12.288,5", "12\u202f288,5"]
    assert number(7.5, language="es") == "7,5" and number(13.1234, digits=2, language="fr") == "13,12"
    assert [percent(0.25, language=code) for code in ("en", "es", "fr")] == ["25%", "25\xa0%", "25\xa0%"]
    when = dt.date(2026, 12, 2)
    assert [date(when, language=code) for code in ("en", "es", "fr")] == ["Dec 2, 2026", "2 dic 2026", "2 déc. 2026"]


def test_a_count_takes_the_languages_own_plural():
    one, many = (
        "Waiting for the model: {count} picture ahead of yours{then}.",
        "Waiting for the model: {count} pictures ahead of yours{then}.",
    )
    assert ngettext(one, many, 1, "es").startswith("Esperando al modelo: {count} imagen ")
    assert ngettext(one, many, 2, "es").startswith("Esperando al modelo: {count} imágenes ")
    assert "{count} image avant" in ngettext(one, many, 0, "fr")  # French: zero takes the singular
    assert "{count} images avant" in ngettext(one, many, 2, "fr")
    assert ngettext(one, many, 0, "en") == many


def _words(node: ast.expr) -> str | None:
    """The English words in an argument given as written (not through `_`), or None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value if _LETTERS.search(node.value) else None
    if isinstance(node, ast.JoinedStr):
        literal = "".join(part.value for part in node.values if isinstance(part, ast.Constant))
        return literal if _LETTERS.search(literal) else None
    if isinstance(node, ast.BinOp):
        return _words(node.left) or _words(node.right)
    if isinstance(node, ast.IfExp):
        return _words(node.body) or _words(node.orelse)
    return None


def escaped(path: Path) -> list[str]:
    """Words this module shows that do not come from the catalogs: `line: words`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute) or node.func.attr not in SHOWN:
            continue
        if isinstance(node.func.value, ast.Name) and node.func.value.id in LOGGERS:
            continue  # a log line, for us, not for the class
        # st.Page's first argument is the page's file, image's the picture: their words are keywords.
        shown = [] if node.func.attr in ("Page", "image", "page_link") else node.args[:1]
        shown += [k.value for k in node.keywords if k.arg in WORD_KEYWORDS]
        found += [f"{node.lineno}: {words}" for arg in shown if (words := _words(arg)) is not None]
    return found


def _modules() -> dict[str, Path]:
    frontend = ROOT / "frontend"
    return {str(path.relative_to(frontend)): path for path in sorted(frontend.rglob("*.py"))}


@pytest.mark.parametrize("module", sorted(set(_modules()) - NOT_YET_CONVERTED - BEYOND_THE_WALK))
def test_no_shown_words_escape_the_catalogs(module):
    assert escaped(_modules()[module]) == []


def test_the_list_of_modules_not_yet_converted_is_honest():
    modules = _modules()
    assert set(modules) >= NOT_YET_CONVERTED | BEYOND_THE_WALK, "a listed module no longer exists"
    done = sorted(module for module in NOT_YET_CONVERTED if not escaped(modules[module]))
    assert done == [], "converted: take these off NOT_YET_CONVERTED"
