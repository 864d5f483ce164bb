"""Lessons 7 and 8's measured sentences in French: whole sentences, their numbers written the language's way."""

from __future__ import annotations

import numpy as np
import pytest

from frontend import language
from frontend.material import measures
from services.common.shapes_judge import Verdict


def verdict(colour: str, shape: str, position: str) -> Verdict:
    return Verdict(True, colour, shape, position)


@pytest.fixture
def french(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(language, "current_language", lambda: "fr")


def test_a_settled_property_reads_as_one_french_sentence(french: None) -> None:
    judged = {0: verdict("blue", "square", "on the left"), 10: verdict("blue", "square", "on the left"),
              20: verdict("blue", "square", "on the left"), 30: verdict("red", "square", "on the left"),
              50: verdict("red", "square", "on the left")}  # fmt: skip
    colour = measures.settling(judged, 50)[0]
    assert measures.settling_sentences([colour], 50) == [
        "La couleur est celle de l'originale (red) quand le changement arrive à l'étape 30 sur 50 ou plus tard\u00a0; "
        "avec le changement à l'étape 10 ou 20, c'est celle du nouveau prompt (blue)."
    ]


def test_shares_are_french_percentages(french: None) -> None:
    maps = np.zeros((2, 4, 2, 2))  # start, two words, end
    maps[:, 0], maps[:, 1], maps[:, 2], maps[:, 3] = 0.5, 0.05, 0.04, 0.002
    sentence = measures.shares_sentence(measures.shares(maps, padding_count=73))
    assert sentence.startswith(
        "Dans cette exécution, le token de début reçoit 50\u00a0% de l'attention, les 2 morceaux"
    )
    assert "le token de fin moins de 1\u00a0%" in sentence
    assert sentence.endswith("La plus grande part revient à\u00a0: le token de début.")


def test_english_percentages_round_as_before() -> None:
    for share in (0.285, 0.295, 0.125, 0.5, 0.999, 0.004, 0.0):
        expected = "under 1%" if 0 < share < 0.005 else f"{share:.0%}"
        assert measures.percent(share) == expected
