"""Capitals of other alphabets that look Latin, where their small forms do not (Greek Nu and Eta).

Greek capital Nu is drawn N, its small form v-like; capital Eta is H, its small form n-like.
Folding case first turned them into other letters: NUDE with a Greek N passed the blocklist,
and NIKO in Greek capitals was not Niko. Both now map capitals before case folding, from one table.
"""

from __future__ import annotations

import pytest

from services.common.text import fold_name
from services.inference.moderation import DEFAULT_BLOCKLIST, Blocklist


@pytest.mark.parametrize("prompt", ["\u039dUDE", "a \u039dAKED man", "\u0397ENTAI"])
def test_greek_capitals_do_not_pass_the_blocklist(prompt):
    assert Blocklist.from_file(DEFAULT_BLOCKLIST).blocks(prompt)


def test_greek_capitals_fold_into_the_latin_name():
    assert fold_name("\u039d\u0399\u039a\u039f") == fold_name("Niko") == "niko"
    assert fold_name("\u0397ANNA") == fold_name("Hanna")
