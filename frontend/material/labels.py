"""How the lessons name things: schedulers, the words two prompts differ in, and the words a model knows."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from frontend.drawing.views import plain
from frontend.language import ngettext
from services.common.api import pb

Marked = list[tuple[str, bool]]  # each word of a prompt, and whether the other prompt lacks it

SHAPES_FAMILY = "shapes"
# Prompts a model knows every word of, by model family (GetModelInfo.model_family): Shapes' are
# captions its training program writes (services/shapes/data.py; none a held-out pair), the
# others are Stable Diffusion prompts. The first is the page's default.
EXAMPLE_PROMPTS: dict[str, tuple[str, ...]] = {
    SHAPES_FAMILY: (
        "a red circle on the left",
        "a large blue star at the top",
        "a small yellow triangle on the right",
        "a pink square at the bottom",
        "a black circle in the center",
    ),
    "stable-diffusion": (
        "a cozy reading nook with a cat, warm afternoon light",
        "a lighthouse on a rocky cliff at sunset, watercolor",
        "an astronaut riding a horse on the moon, digital art",
        "a bowl of ramen on a wooden table, studio photograph",
    ),
}


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


def example_prompts(info: pb.GetModelInfoResponse | None) -> tuple[str, ...]:
    """Prompts made of words the loaded model knows (Stable Diffusion's for a family without its own)."""
    family = info.model_family if info is not None else ""
    return EXAMPLE_PROMPTS.get(family, EXAMPLE_PROMPTS["stable-diffusion"])


def unlearned_words(tokens: pb.TokenizeResponse) -> list[str]:
    """The prompt's words, in order and once each, with a piece the model never learned (Token.known).

    A word is the pieces up to one ending in `</w>` ("zebrafish" is "zebra" + "fish</w>"); the
    pieces cut off past the window count too: the student typed them.
    """
    words: list[str] = []
    text, known = "", True
    for token in [*(t for t in tokens.tokens if t.kind == pb.TOKEN_KIND_PROMPT), *tokens.truncated_tokens]:
        text, known = text + token.text, known and token.known
        if token.piece.endswith("</w>"):
            if not known and text not in words:
                words.append(text)
            text, known = "", True
    if text and not known and text not in words:
        words.append(text)
    return words


def unlearned_sentence(words: list[str], model_name: str) -> str:
    """Which words the model never learned, for a warning under a prompt box ("" if none); markdown-safe."""
    if not words:
        return ""
    quoted = ", ".join(f"“{plain(word)}”" for word in words)
    sentence = ngettext(
        "{model} never learned {words}: no training caption had it, so it means nothing to it.",
        "{model} never learned {words}: no training caption had them, so they mean nothing to it.",
        len(words),
    )
    return sentence.format(model=model_name, words=quoted)
