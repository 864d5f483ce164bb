"""Slowing down whoever guesses codes, never the class: the guesser waits, classmates do not.

Two counts in this front-end process, each kind of code (class, teacher) with its own:

- per browser (its signed cookie, `frontend.access.browser_id`; without one, the tab): five
  tries are free, then each try waits twice as long as the last, from 10 seconds up
  to 5 minutes. A reload or a new tab of the same browser keeps the count; a right
  code clears it. This is the count a curious student meets.
- per browser address, over a sliding window: behind a school's network address
  translation the whole class shares one address, so this count only stops a script
  that opens a new session for every guess. Its limit is far above what a class
  mistyping reaches (200 students signing in together, two typos each, is 400),
  and guessing a generated code of three words at its rate takes longer than a
  school year. A browser that has given the right code of that kind before (a
  student reloading, the teacher opening a new tab) is not held by its address's
  count: a script that fills it keeps out only browsers that never knew the code.

Guessing the class code never slows the teacher's page: the counts are per kind. A
teacher's page already open keeps working whatever happens to new tries.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

import streamlit as st

from frontend.access.browser_id import browser_id
from frontend.access.transport import browser_address

FREE_TRIES = 5  # per session
FIRST_WAIT_S = 10.0  # after the free tries; then 20, 40, ...
MAX_WAIT_S = 300.0
ADDRESS_WINDOW_S = 600.0
ADDRESS_WRONG_LIMIT = 1000  # wrong tries from one address within the window: a script, not a class
KNOWN_KEPT = 10_000  # browsers remembered as having given a right code, per process (the oldest forgotten)
COUNTS_KEPT = 20_000  # sessions and addresses counted; past it, those no longer waiting or in the window go


@dataclass
class _SessionTries:
    wrong: int = 0
    wait_until: float = 0.0


@dataclass
class _AddressTries:
    wrong_at: deque[float] = field(default_factory=deque)  # when each wrong try in the window was made


class CodeGuard:
    """Wrong tries per kind of code, per session and per address, shared by every session of this process."""

    def __init__(self, address_limit: int = ADDRESS_WRONG_LIMIT, address_window_s: float = ADDRESS_WINDOW_S) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[tuple[str, str], _SessionTries] = {}
        self._addresses: dict[tuple[str, str], _AddressTries] = {}
        self._known: dict[tuple[str, str], None] = {}  # (kind, session) that gave the right code, oldest first
        self.address_limit = address_limit
        self.address_window_s = address_window_s

    def wait_s(self, kind: str, session: str, address: str) -> float:
        """Seconds before this session, at this address, may try a `kind` code again (0: now)."""
        now = time.monotonic()
        with self._lock:
            tries = self._sessions.get((kind, session))
            session_wait = max(0.0, tries.wait_until - now) if tries else 0.0
            window = self._window(kind, address, now)
            address_wait = 0.0
            known = (kind, session) in self._known  # knew the code: a script at its address must not keep it out
            if not known and window is not None and len(window.wrong_at) >= self.address_limit:
                address_wait = window.wrong_at[0] + self.address_window_s - now
            return max(session_wait, address_wait)

    def wrong(self, kind: str, session: str, address: str) -> None:
        now = time.monotonic()
        with self._lock:
            tries = self._sessions.setdefault((kind, session), _SessionTries())
            tries.wrong += 1
            if tries.wrong >= FREE_TRIES:
                tries.wait_until = now + min(MAX_WAIT_S, FIRST_WAIT_S * 2.0 ** (tries.wrong - FREE_TRIES))
            if address:
                self._addresses.setdefault((kind, address), _AddressTries())
                window = self._window(kind, address, now)
                assert window is not None
                window.wrong_at.append(now)
            self._forget_the_settled(now)

    def _forget_the_settled(self, now: float) -> None:
        """Keep the counts bounded: a script sending no cookie is a new session at every try."""
        if len(self._sessions) > COUNTS_KEPT:  # sessions not made to wait (a guesser waiting is kept)
            self._sessions = {key: tries for key, tries in self._sessions.items() if tries.wait_until > now}
        if len(self._addresses) > COUNTS_KEPT:  # addresses with no wrong try left in their window
            self._addresses = {
                key: window
                for key, window in self._addresses.items()
                if window.wrong_at and window.wrong_at[-1] > now - self.address_window_s
            }

    def right(self, kind: str, session: str) -> None:
        """A right code clears the session's count and lets it past its address's window from now on.

        The address's window runs out by itself.
        """
        with self._lock:
            self._sessions.pop((kind, session), None)
            self._known.pop((kind, session), None)
            self._known[kind, session] = None  # the newest last
            if len(self._known) > KNOWN_KEPT:
                del self._known[next(iter(self._known))]

    def _window(self, kind: str, address: str, now: float) -> _AddressTries | None:
        window = self._addresses.get((kind, address))
        if window is not None:
            while window.wrong_at and window.wrong_at[0] <= now - self.address_window_s:
                window.wrong_at.popleft()
        return window


@st.cache_resource
def code_guard() -> CodeGuard:
    return CodeGuard()


def this_session() -> str:
    """Name the guesser, as the guard counts: the browser, so a reload starts no new count.

    A browser that sends no cookie (a script, or the tab's first visit) is a browser of its own per
    session: the address's window is what stops a script that opens a new session for every guess.
    """
    return f"browser:{browser_id()}"


def wait_before_trying(kind: str) -> float:
    return code_guard().wait_s(kind, this_session(), browser_address())


def record_try(kind: str, right: bool) -> None:
    guard = code_guard()
    if right:
        guard.right(kind, this_session())
    else:
        guard.wrong(kind, this_session(), browser_address())
