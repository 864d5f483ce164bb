"""The languages Diffusion Classroom speaks, and the one hook through which shared code translates.

The catalogs themselves (gettext .po files) live with the front end, in
`frontend/locales`, and `frontend/language.py` reads them. Code in `services.common`
that writes sentences a student reads (the client's error sentences, `errors.py`)
marks them with `_` from here: the front end installs its translator at start
(`use_translator`), and anywhere else (the service, a script) the English stays.
The service checks a class's language against `LANGUAGES`, never against files.

A sentence the service writes is a `Sentence`: English (where no translator is
installed), with the template it was written from and its arguments, which the
service sends beside it so the client can write it in the reader's language.
"""

from __future__ import annotations

from collections.abc import Callable

# Each language shipped: its code (the catalog's folder) and its name as its speakers write it.
LANGUAGES: dict[str, str] = {"en": "English", "es": "Español", "fr": "Français"}
SOURCE_LANGUAGE = "en"  # the msgids are the English text


def _english(message: str) -> str:
    return message


_translate: Callable[[str], str] = _english


def use_translator(translate: Callable[[str], str]) -> None:
    """Translate this process's shared sentences with `translate` (the front end's, bound to each session)."""
    global _translate
    _translate = translate


def _(message: str) -> str:
    """`message` (English) in the reader's language, where a translator is installed; else as it is."""
    return _translate(message)


def N_(message: str) -> str:  # gettext's name for "marked here, translated where shown"
    """Mark a sentence for the catalogs where it is defined; `_` translates it where it is shown."""
    return message


class Sentence(str):
    """`template` (marked with `N_`) written out with `args`, keeping both so a reader can rewrite it in its language.

    Arguments are kept as text as they were written in (numbers rounded as the sentence shows
    them), so `_(template).format(**args)` rebuilds the sentence anywhere.
    """

    template: str
    args: dict[str, str]

    def __new__(cls, template: str, **args: str | int | float) -> Sentence:
        kept = {name: str(value) for name, value in args.items()}
        sentence = super().__new__(cls, _(template).format(**kept))
        sentence.template, sentence.args = template, kept
        return sentence


def known_language(code: str) -> bool:
    return code in LANGUAGES
