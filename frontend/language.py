"""The language each page speaks: the gettext catalogs in `frontend/locales`, bound to the session.

English is the source: a msgid is the English sentence, and a page marks each one
with `_` (or `ngettext` where a count changes the words). Which language a
session reads, first that applies:

1. the student's own pick (the picker in the sidebar, `language_picker`), kept in
   the session and in the address (`?lang=es`), so a reload keeps it;
2. the class's language, set by the teacher (`ClassState.language`);
3. English.

Numbers and dates are written as the language writes them (`number`, `percent`,
`date`). Catalogs are read once per process, as .po files (no compile step).
"""

from __future__ import annotations

import datetime as dt
import gettext
from collections.abc import Callable
from functools import cache
from pathlib import Path

import streamlit as st
from babel import Locale
from babel.dates import format_date, format_time
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po
from babel.numbers import format_decimal, format_percent
from streamlit.runtime.scriptrunner import get_script_run_ctx

from services.common import i18n
from services.common.i18n import LANGUAGES, SOURCE_LANGUAGE
from services.common.i18n import N_ as N_  # pages mark sentences with it, from here

LOCALES = Path(__file__).parent / "locales"
DOMAIN = "messages"
PICKED = "language"  # session state: the student's own pick (a code of LANGUAGES)
CLASS_DEFAULT = "class_language"  # session state: the class's language, as last heard
ENGLISH_LABEL = "Language"  # the picker's label in English, always beside the language's own
QUERY = "lang"  # the address's parameter that keeps the pick over a reload


def catalog_path(language: str) -> Path:
    return LOCALES / language / "LC_MESSAGES" / f"{DOMAIN}.po"


@cache
def _catalog(language: str) -> Catalog | None:
    if language == SOURCE_LANGUAGE or language not in LANGUAGES:
        return None
    with catalog_path(language).open("rb") as po:
        return read_po(po, locale=language)


@cache
def _table(language: str) -> dict[str | tuple[str, str], str | tuple[str, ...]]:
    """Each msgid (or (singular, plural)) -> its translation, leaving out the untranslated and the fuzzy."""
    catalog = _catalog(language)
    table: dict[str | tuple[str, str], str | tuple[str, ...]] = {}
    for message in catalog or ():
        if not message.id or message.fuzzy:
            continue
        if isinstance(message.id, tuple):
            if all(message.string):
                table[message.id[0], message.id[1]] = tuple(message.string)
        elif message.string:
            table[message.id] = message.string
    return table


def current_language() -> str:
    """The language this session reads (see the module's docstring)."""
    if get_script_run_ctx(suppress_warning=True) is None:
        return SOURCE_LANGUAGE  # no session: a stream's reading thread, a script, a test calling a helper
    picked, default = st.session_state.get(PICKED), st.session_state.get(CLASS_DEFAULT)
    for code in (picked, default):
        if code in LANGUAGES:
            return str(code)
    return SOURCE_LANGUAGE


def translate(message: str, language: str) -> str:
    found = _table(language).get(message) if language != SOURCE_LANGUAGE else None
    return found if isinstance(found, str) else message


def _(message: str) -> str:
    """`message` (English, the msgid) in this session's language."""
    return translate(message, current_language())


def ngettext(singular: str, plural: str, n: int, language: str | None = None) -> str:
    """The sentence for `n` things, in `language` or this session's (with the language's own plural rules)."""
    language = language or current_language()
    forms = _table(language).get((singular, plural)) if language != SOURCE_LANGUAGE else None
    if isinstance(forms, tuple):
        return forms[min(_plural_rule(language)(n), len(forms) - 1)]
    return singular if n == 1 else plural


@cache
def _plural_rule(language: str) -> Callable[[int], int]:
    """The catalog's Plural-Forms rule: which msgstr form `n` takes (French: 0 and 1 take the first)."""
    catalog = _catalog(language)
    assert catalog is not None
    return gettext.c2py(catalog.plural_expr)


i18n.use_translator(_)  # the client's error sentences (services.common.errors) speak the session's language


# -- numbers and dates ------------------------------------------------------------------------


def locale(language: str | None = None) -> Locale:
    """The locale numbers and dates are written in: `language`'s, else this session's."""
    return Locale.parse(language or current_language())


def number(value: float, digits: int | None = None, language: str | None = None) -> str:
    """A number as the language writes it (1,234.5 / 1.234,5 / 1 234,5); `digits`: exactly that many decimals."""
    pattern = None if digits is None else "#,##0" + ("." + "0" * digits if digits else "")
    return format_decimal(value, format=pattern, locale=locale(language))


def percent(fraction: float, language: str | None = None) -> str:
    """A fraction as a percentage (0.25 -> 25%, 25 %, 25 % as each language spaces it)."""
    return format_percent(fraction, locale=locale(language))


def date(when: dt.date, language: str | None = None) -> str:
    """A date in the language's medium form (Dec 2, 2026 / 2 dic 2026 / 2 déc. 2026)."""
    return format_date(when, format="medium", locale=locale(language))


def clock(when: dt.datetime | dt.time, language: str | None = None) -> str:
    """A time of day to the second, as the language writes it (6:30:15 PM / 18:30:15)."""
    return format_time(when, format="medium", locale=locale(language))


# -- the picker ---------------------------------------------------------------------------------


def _picked(code: str) -> None:
    st.session_state[PICKED] = code
    st.query_params[QUERY] = code


def hear_class_language(code: str) -> None:
    """The class's language as the teacher set it (an empty or unknown code: none)."""
    st.session_state[CLASS_DEFAULT] = code if code in LANGUAGES else ""


def language_picker() -> None:
    """The sidebar's language picker, on every page; the pick is kept in the session and in the address."""
    sent = st.query_params.get(QUERY)
    if PICKED not in st.session_state and sent in LANGUAGES:
        st.session_state[PICKED] = sent  # a reload, or a link a classmate shared
    if st.session_state.get(PICKED) in LANGUAGES:
        st.query_params[QUERY] = st.session_state[PICKED]  # moving to another page clears the address's
    codes = list(LANGUAGES)
    shown = current_language()
    if st.session_state.get("language_picker") != shown:
        st.session_state["language_picker"] = shown  # follows the class's language until the student picks
    # Beside its own word, the English one: a student who landed on a language they cannot read finds it.
    # Words only: a globe emoji was a missing-glyph box where no emoji font is installed, and an icon's name
    # (Streamlit's `:material/language:`) would be read out as the group's label by a screen reader.
    label = _("Language") + ("" if shown == SOURCE_LANGUAGE else f" · {ENGLISH_LABEL}")
    # Radio buttons, not a select box: every choice in view, and no second "Open" button on every page.
    st.sidebar.radio(
        label,
        codes,
        format_func=LANGUAGES.__getitem__,
        key="language_picker",
        on_change=lambda: _picked(st.session_state["language_picker"]),
    )
