"""How the lessons name things: schedulers by their display names, and the words two prompts differ in."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from frontend.views import plain
from services.common.api import pb

Marked = list[tuple[str, bool]]  # each word of a prompt, and whether the other prompt lacks it


def scheduler_names(info: pb.GetModelInfoResponse | None) -> dict[str, str]:
    """Each scheduler's display name ("DPM-Solver++") by its id ("dpm_solver_pp"), as the service gives them."""
    return {s.name: s.display_name for s in info.schedulers if s.display_name} if info is not None else {}


def differing_words(a: str, b: str) -> tuple[Marked, Marked]:
    """Both prompts word by word, each word marked True where it is not shared with the other prompt."""
    words_a, words_b = a.split(), b.split()
    shared_a, shared_b = set(), set()
    for block in difflib.SequenceMatcher(a=words_a, b=words_b, autojunk=False).get_matching_blocks():
        shared_a.update(range(block.a, block.a + block.size))
        shared_b.update(range(block.b, block.b + block.size))
    return (
        [(word, i not in shared_a) for i, word in enumerate(words_a)],
        [(word, i not in shared_b) for i, word in enumerate(words_b)],
    )


def _runs(words: Marked) -> Iterable[tuple[str, bool]]:
    """Neighbouring words with the same mark joined into one run."""
    run: list[str] = []
    marked = False
    for word, differs in words:
        if run and differs != marked:
            yield " ".join(run), marked
            run = []
        run.append(word)
        marked = differs
    if run:
        yield " ".join(run), marked


def bracketed(words: Marked) -> str:
    """The whole prompt as plain text, the differing words between « and » (for chart legends and menus)."""
    return " ".join(f"«{text}»" if differs else text for text, differs in _runs(words))


def highlighted(words: Marked, colour: str) -> str:
    """The whole prompt as markdown, safe from what it contains, the differing words bold and coloured on a tint.

    `colour` is one of Streamlit's markdown colours ("orange", "violet", ...).
    """
    return " ".join(
        f":{colour}-background[:{colour}[**{plain(text)}**]]" if differs else plain(text)
        for text, differs in _runs(words)
    )
