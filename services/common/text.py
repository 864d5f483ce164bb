"""Rules for text people type that others will see: what a display name may hold, and when two names are one.

Shared by the front end (at sign-in, and for the student id it asserts) and the
inference service (which checks what it is told and keeps the roster): one rule,
checked on both sides.

Two names are the same name when they look the same to the teacher: `fold_name`
puts a name in the form they are compared in (compatibility forms such as
fullwidth letters, small capitals, case, letters from other alphabets drawn like
Latin ones, invisible characters and runs of spaces all fold away).
"""

# The look-alike letters of other alphabets are the point of this file.
# ruff: noqa: RUF001, RUF002, RUF003

from __future__ import annotations

import unicodedata

from services.common.i18n import N_, Sentence

NAME_LIMIT = 40  # characters in a display name


def _letter_forms() -> dict[int, str]:
    """Small capitals ("LATIN LETTER SMALL CAPITAL N") and regional indicators ("... SYMBOL LETTER N") as letters.

    Unicode gives neither a compatibility decomposition, so NFKC and NFKD leave them alone.
    """
    forms: dict[int, str] = {}
    for code in (*range(0x0250, 0x02B0), *range(0x1D00, 0x1D80), *range(0xA730, 0xA7B0), *range(0x1F1E6, 0x1F200)):
        name = unicodedata.name(chr(code), "")
        for prefix in ("LATIN LETTER SMALL CAPITAL ", "REGIONAL INDICATOR SYMBOL LETTER "):
            letter = name.removeprefix(prefix)
            if name.startswith(prefix) and len(letter) == 1:
                forms[code] = letter.lower()
    return forms


# Latin letters drawn another way, as plain letters (the prompt blocklist reads them too).
LETTER_FORMS = _letter_forms()
# Capitals of other alphabets drawn like Latin capitals. They are mapped before case folding,
# because some of their small forms look like another letter: Greek Ν is N, but ν looks like v.
# The prompt blocklist reads this table too.
LOOK_ALIKE_CAPITALS = str.maketrans(
    {
        "А": "A", "В": "B", "Е": "E", "Ѕ": "S", "І": "I", "Ј": "J", "К": "K", "М": "M", "Н": "H", "О": "O",
        "Р": "P", "С": "C", "Т": "T", "У": "Y", "Х": "X", "Ү": "Y", "Ԛ": "Q", "Ԝ": "W",
        "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N", "Ο": "O",
        "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X",
    }
)  # fmt: skip
# Small letters of other alphabets that look like Latin ones (after NFKC and case folding).
# The prompt blocklist reads the same table (services/inference/moderation.py).
LOOK_ALIKE_LETTERS: dict[str, str] = {
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c",
    "т": "t", "у": "y", "х": "x", "і": "i", "ї": "i", "ј": "j", "ѕ": "s", "ԁ": "d", "ɡ": "g", "ӏ": "l",
    "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t",
    "υ": "u", "χ": "x", "ѵ": "v", "ɩ": "i", "ı": "i", "ɑ": "a",
}  # fmt: skip
_LOOK_ALIKE_SMALL = str.maketrans(LOOK_ALIKE_LETTERS)
# Letters that draw nothing (Hangul fillers, the blank Braille pattern): a name made with one
# looks like the name without it. Unlike format characters, Unicode counts them as letters or symbols.
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
# Marks that change no letter's look: variation selectors (the emoji form of ❤), the combining grapheme joiner,
# and a dot above left over after NFKC (no letter takes it precomposed: on i or j it is the dot already there;
# Turkish İ folds to i and one).
_IGNORED_MARKS = frozenset(
    [chr(c) for c in (0x0307, 0x034F, 0x17B4, 0x17B5, *range(0x180B, 0x1810), *range(0xFE00, 0xFE10))]
    + [chr(c) for c in range(0xE0100, 0xE01F0)]
)


def hidden_characters(text: str, allow_newlines: bool = False) -> list[str]:
    """Control, format (invisible, direction-changing) and line-separating characters in `text`, as U+XXXX."""
    allowed = "\n\t" if allow_newlines else ""
    found = {
        f"U+{ord(c):04X}"
        for c in text
        if c not in allowed and unicodedata.category(c) in ("Cc", "Cf", "Co", "Cs", "Zl", "Zp")
    }
    return sorted(found)


def fold_name(name: str) -> str:
    """The form two display names are compared in: equal when a teacher could not tell them apart.

    "Аlice" (a Cyrillic А), "Ａlice" (fullwidth), "ᴀʟɪᴄᴇ" (small capitals), "ALICE", " alice "
    and "Alice" with a zero-width space all fold to "alice". Accents stay: "José" and "Jose" are two names.
    """
    text = unicodedata.normalize("NFKC", name).translate(LETTER_FORMS).translate(LOOK_ALIKE_CAPITALS).casefold()
    text = text.translate(_LOOK_ALIKE_SMALL)
    text = "".join(c for c in text if c not in _BLANK_LETTERS and c not in _IGNORED_MARKS and not hidden_characters(c))
    return " ".join(text.split())  # leading, trailing and repeated spaces (NFKC made every space a plain one)


def name_problem(name: str) -> Sentence | None:
    """Why a display name cannot be used, as a sentence (the reader's language where a translator is installed).

    None when it can. The service sends the sentence's template beside it (`services.inference.refusals`).
    """
    name = name.strip()
    if not fold_name(name):
        return Sentence(N_("Please type the name your teacher will see."))
    if len(name) > NAME_LIMIT:
        return Sentence(N_("A name may be at most {limit} characters long."), limit=NAME_LIMIT)
    if hidden_characters(name) or _BLANK_LETTERS.intersection(name):
        return Sentence(N_("A name may not have invisible or control characters."))
    return None
