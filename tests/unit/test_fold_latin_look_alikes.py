"""Latin letters drawn like others: a dotless ı, a Latin alpha ɑ, an i with a second dot above.

Each passed beside the real name while its holder was online ("Alıce" next to Alice);
now they fold into it, and the prompt blocklist, which reads the same table, sees
through them too.
"""

# ruff: noqa: RUF002

from __future__ import annotations

import pytest

from services.common.text import fold_name
from services.inference.moderation import DEFAULT_BLOCKLIST, Blocklist


@pytest.mark.parametrize("look_alike", ["Al\u0131ce", "\u0251lice", "Ali\u0307ce"])
def test_a_latin_look_alike_is_the_same_name(look_alike):
    assert fold_name(look_alike) == fold_name("Alice") == "alice"


def test_a_turkish_capital_i_with_a_dot_is_an_i():
    assert fold_name("\u0130lker") == fold_name("ilker") == "ilker"


def test_names_that_look_different_stay_different():
    assert len({fold_name(name) for name in ("Alice", "Alíce", "Alica", "Elise", "José", "Jose")}) == 6


@pytest.mark.parametrize("prompt", ["a n\u0251ked man", "nud\u0131ty"])
def test_the_blocklist_sees_through_them_too(prompt):
    assert Blocklist.from_file(DEFAULT_BLOCKLIST).blocks(prompt)
