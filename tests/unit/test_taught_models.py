"""The classes' own models are kept by digest: the least recently used go, never one a queued picture needs."""

from __future__ import annotations

import pytest

from services.inference.diffusion import taught as taught_module
from services.inference.diffusion.taught import TaughtModels


class Word:
    """Stands in for a TaughtWord: only its digest matters to the keeping."""

    def __init__(self, digest: str) -> None:
        self._digest = digest

    def digest(self) -> str:
        return self._digest


@pytest.fixture
def models(monkeypatch) -> TaughtModels:
    monkeypatch.setattr(taught_module, "with_word", lambda model, word: f"{model}+{word.digest()}")
    return TaughtModels("shapes", kept=2)  # type: ignore[arg-type]


def test_the_least_recently_used_go_beyond_the_kept(models):
    for digest in ("a", "b"):
        models.add(Word(digest))
    assert models.model_for("a") == "shapes+a"  # "a" used last: "b" goes first
    models.add(Word("c"))
    assert models.has("a") and models.has("c") and not models.has("b")
    assert models.model_for("") == "shapes"


def test_a_model_a_queued_picture_holds_is_kept_until_it_is_let_go(models):
    for digest in ("a", "b"):
        models.add(Word(digest))
        models.hold(digest)  # a picture of each class queued
    models.hold("a")  # and a second of the first class
    models.add(Word("c"))  # a third class: the two held stay, and the new one is there for its picture
    assert all(models.has(d) for d in "abc") and models.model_for("c") == "shapes+c"
    models.let_go("b")  # its picture ended: back to the limit, "b" the one not held
    assert models.has("a") and models.has("c") and not models.has("b")
    models.let_go("a")
    assert models.has("a")  # one of its pictures still holds it
    models.let_go("a")
    models.add(Word("d"))
    assert not models.has("a") and models.has("c") and models.has("d")  # let go: the least recently used goes
    models.let_go("a")  # a stray let-go changes nothing
    models.hold("")  # the model itself is never held or dropped
    assert models.model_for("") == "shapes" and models.has("d")
