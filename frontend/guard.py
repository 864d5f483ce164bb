"""Slowing down whoever guesses codes: after a few wrong tries, each try waits longer.

Counted per browser address (and per session, for browsers behind one school
proxy) in this front-end process: five tries are free, then the wait doubles
from 10 seconds up to 5 minutes. A right code clears the count.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import streamlit as st

from frontend.client import browser_address

FREE_TRIES = 5
FIRST_WAIT_S = 10.0  # after the free tries; then 20, 40, ... (a script guessing codes gets a few an hour)
MAX_WAIT_S = 300.0


@dataclass
class _Tries:
    wrong: int = 0
    wait_until: float = 0.0


class CodeGuard:
    """Wrong tries per (what is guessed, who guesses), shared by every session of this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tries: dict[tuple[str, str], _Tries] = {}

    def wait_s(self, kind: str, who: str) -> float:
        """Seconds before `who` may try a `kind` code again (0: now)."""
        with self._lock:
            tries = self._tries.get((kind, who))
            return max(0.0, tries.wait_until - time.monotonic()) if tries else 0.0

    def wrong(self, kind: str, who: str) -> None:
        with self._lock:
            tries = self._tries.setdefault((kind, who), _Tries())
            tries.wrong += 1
            if tries.wrong >= FREE_TRIES:
                tries.wait_until = time.monotonic() + min(MAX_WAIT_S, FIRST_WAIT_S * 2.0 ** (tries.wrong - FREE_TRIES))

    def right(self, kind: str, who: str) -> None:
        with self._lock:
            self._tries.pop((kind, who), None)


@st.cache_resource
def code_guard() -> CodeGuard:
    return CodeGuard()


def guessers() -> list[str]:
    """Who is trying: this browser's address, and this session."""
    session = st.session_state.setdefault("guard_session", f"session:{id(st.session_state)}")
    return [f"address:{browser_address() or 'unknown'}", session]


def wait_before_trying(kind: str) -> float:
    guard = code_guard()
    return max(guard.wait_s(kind, who) for who in guessers())


def record_try(kind: str, right: bool) -> None:
    guard = code_guard()
    for who in guessers():
        (guard.right if right else guard.wrong)(kind, who)
