"""The prompt blocklist: words and phrases a class server will not draw, checked before any model work."""

from __future__ import annotations

import re
from pathlib import Path

DEFAULT_BLOCKLIST = Path(__file__).with_name("blocklist.txt")

_WORDS = re.compile(r"[^\w]+")


def _normalise(text: str) -> str:
    """Lower case, words separated by single spaces, padded, so phrases match on word boundaries only."""
    return f" {_WORDS.sub(' ', text.lower()).strip()} "


class Blocklist:
    """Whole words and phrases (one per line, # starts a comment); "sex" blocks "sex", not "Essex"."""

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
        text = _normalise(prompt)
        return any(phrase in text for phrase in self._phrases)
