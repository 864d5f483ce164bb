"""Rules for text people type that others will see: what a display name may hold.

Shared by the front end (at sign-in) and the inference service (which checks
what it is told): one rule, checked on both sides.
"""

from __future__ import annotations

import unicodedata

NAME_LIMIT = 40  # characters in a display name


def hidden_characters(text: str, allow_newlines: bool = False) -> list[str]:
    """Control, format (invisible, direction-changing) and line-separating characters in `text`, as U+XXXX."""
    allowed = "\n\t" if allow_newlines else ""
    found = {
        f"U+{ord(c):04X}"
        for c in text
        if c not in allowed and unicodedata.category(c) in ("Cc", "Cf", "Co", "Cs", "Zl", "Zp")
    }
    return sorted(found)


def name_problem(name: str) -> str | None:
    """Why a display name cannot be used, as a sentence; None when it can."""
    name = name.strip()
    if not name:
        return "Please type the name your teacher will see."
    if len(name) > NAME_LIMIT:
        return f"A name may be at most {NAME_LIMIT} characters long."
    if hidden_characters(name):
        return "A name may not have invisible or control characters."
    return None
