"""The prompt blocklist: words and phrases a class server will not draw, checked before any model work.

Matching happens on a normal form of the text, so the usual tricks do not get a
word past it: Unicode compatibility forms (fullwidth, circled and mathematical
letters), accents ("nüde"), case, invisible characters (zero-width spaces,
direction marks), small capitals ("ɴᴜᴅᴇ"), regional-indicator letters (the flag
alphabet), common look-alike letters from other alphabets and digits standing for
letters ("pr0n"), letters spelt out with separators ("b.a.n.a.n.a") and plurals.
Whole words only: "sex" blocks "SEX" and "s e x", not "Essex". The tried evasions
are a test table (tests/security/test_attacks.py).
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from services.common.text import LETTER_FORMS, LOOK_ALIKE_CAPITALS, LOOK_ALIKE_LETTERS

DEFAULT_BLOCKLIST = Path(__file__).with_name("blocklist.txt")

_SEPARATORS = re.compile(r"[\W_]+")


# Letters from other alphabets that look like Latin ones (the table display names fold with too),
# and digits and signs standing for letters.
_LOOK_ALIKES = str.maketrans(
    {**LOOK_ALIKE_LETTERS, "0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"}
)


def _stem(word: str) -> str:
    """A word without a plural ending, so "bananas" and "banana" meet (applied to both sides)."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("ses", "xes", "ches", "shes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def words(text: str, articles_apart: bool = False) -> list[str]:
    """The text's words in normal form (see the module's docstring).

    Letters standing alone are one word spelt out ("s.e.x"); with `articles_apart`,
    a leading "a" or "i" of such a run stays a word of its own ("a s.e.x poster").
    """
    # NFKD, not NFKC: it splits "ü" into "u" and a combining mark, which goes with the invisible ones.
    # Capitals first: the Greek capital Nu is an N, though its small form looks like a v.
    text = unicodedata.normalize("NFKD", text).translate(LETTER_FORMS).translate(LOOK_ALIKE_CAPITALS).casefold()
    text = "".join(c for c in text if unicodedata.category(c) not in ("Cf", "Mn"))  # invisible marks, accents
    text = text.translate(_LOOK_ALIKES)
    merged: list[str] = []
    letters: list[str] = []

    def flush() -> None:
        if articles_apart and len(letters) > 2 and letters[0] in ("a", "i"):
            merged.append(letters.pop(0))
        if letters:
            merged.append("".join(letters))
            letters.clear()

    for piece in _SEPARATORS.split(text):
        if len(piece) == 1:  # a letter on its own: part of a word spelt out with separators
            letters.append(piece)
        elif piece:
            flush()
            merged.append(piece)
    flush()
    return [_stem(word) for word in merged]


def _normalise(text: str, articles_apart: bool = False) -> str:
    """Words in normal form, single spaces, padded, so phrases match on word boundaries only."""
    return f" {' '.join(words(text, articles_apart))} "


class Blocklist:
    """Whole words and phrases (one per line, # starts a comment), matched in normal form."""

    def __init__(self, phrases: list[str]) -> None:
        self._phrases = [_normalise(p) for p in phrases if p.strip()]

    @classmethod
    def from_file(cls, path: Path | None) -> Blocklist:
        if path is None:
            return cls([])
        lines = (line.split("#", 1)[0] for line in path.read_text().splitlines())
        return cls([line for line in lines if line.strip()])

    def __len__(self) -> int:
        return len(self._phrases)

    def blocks(self, prompt: str) -> bool:
        readings = {_normalise(prompt), _normalise(prompt, articles_apart=True)}
        return any(phrase in text for phrase in self._phrases for text in readings)
