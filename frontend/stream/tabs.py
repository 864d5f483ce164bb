"""A closed tab gives its place back: a student's own generations stop when their browser tab has gone.

A generation is read by a thread of its own (`frontend/stream/reader.py`), so it goes on
while the student looks at another page, and is there when they come back. When
the tab itself closes, Streamlit ends its session, and nobody will ever look: the
watch notices within a few seconds and stops the stream, so the service frees the
student's place in the queue (or the GPU) for the rest of the class. A session
that reconnects within `GRACE_S` (a network blip) keeps its generation.

Lesson examples are not watched: they are shared by every session and kept for the
next student who opens them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

import streamlit as st
from streamlit import runtime
from streamlit.runtime.scriptrunner import get_script_run_ctx

log = logging.getLogger(__name__)

CHECK_EVERY_S = 1.0
GRACE_S = 5.0  # a session gone this long has closed its tab (Streamlit keeps it for reconnects meanwhile)
KEPT_PER_TAB = 4  # a tab runs one generation at a time (a new one stops the last): older ones have ended


class Stoppable(Protocol):
    def stop(self) -> None: ...


class TabWatch:
    """The generations each browser session started, stopped once that session has ended."""

    def __init__(self, is_open: Callable[[str], bool] | None = None) -> None:
        self._is_open = is_open or _session_is_open
        self._lock = threading.Lock()
        self._held: dict[str, list[Stoppable]] = {}
        self._gone_since: dict[str, float] = {}
        self._thread = threading.Thread(target=self._run, name="classroom-tab-watch", daemon=True)
        self._thread.start()

    def hold(self, session: str, generation: Stoppable) -> None:
        with self._lock:
            held = self._held.setdefault(session, [])
            held.append(generation)
            del held[:-KEPT_PER_TAB]

    def sweep(self, now: float | None = None) -> int:
        """Stop the generations of sessions gone for GRACE_S; returns how many were stopped."""
        now = time.monotonic() if now is None else now
        with self._lock:
            sessions = list(self._held)
        stopped: list[Stoppable] = []
        for session in sessions:
            if self._is_open(session):
                self._gone_since.pop(session, None)
                continue
            gone = self._gone_since.setdefault(session, now)
            if now - gone >= GRACE_S:
                with self._lock:
                    stopped += self._held.pop(session, [])
                self._gone_since.pop(session, None)
        for generation in stopped:
            generation.stop()
        if stopped:
            log.info("stopped %d generation(s) of closed tabs", len(stopped))
        return len(stopped)

    def _run(self) -> None:
        while True:
            time.sleep(CHECK_EVERY_S)
            try:
                self.sweep()
            except Exception:  # the watch must outlive any one odd session
                log.exception("the tab watch failed a sweep")


def _session_is_open(session: str) -> bool:
    return not runtime.exists() or runtime.get_instance().is_active_session(session)


@st.cache_resource
def tab_watch() -> TabWatch:
    """The one watch of this front-end process."""
    return TabWatch()


def stop_when_tab_closes(generation: Stoppable) -> None:
    """Stop `generation` if this page's browser tab closes before it ends (no-op outside a served app)."""
    context = get_script_run_ctx()
    if context is None or not runtime.exists():
        return
    tab_watch().hold(context.session_id, generation)
