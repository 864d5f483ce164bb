"""One Generate stream, read to its end by a thread of its own while pages show where it stands.

A wait is never silent (the page draws the reader's `state`), and leaving a page
does not throw the work away: the thread goes on reading, and the trajectory is
there when the student comes back.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import grpc
import streamlit as st

from frontend.access.transport import browser_address
from frontend.client import RECONNECT_DELAYS_S, ClassroomClient, StudentError, get_client, student_id
from frontend.stream.progress import StreamState
from frontend.stream.wire import TrajectoryView
from services.common.api import pb

log = logging.getLogger(__name__)

FAILED_SENTENCE = "Something went wrong while reading this picture. Try again; if it keeps happening, tell the teacher."


def _name() -> str:
    return st.session_state.get("display_name", "")


class StreamReader:
    """One Generate stream and the thread that reads it (the service's side of it is a `diffusion` generation).

    Made in a page's script (it asks Streamlit who the student is); afterwards only its
    thread changes it. `trajectory` grows as events arrive; `state` says where it stands.
    """

    def __init__(
        self,
        request: pb.GenerateRequest,
        *,
        lesson_entry: str = "",
        expected_step_s: float | None = None,
        on_end: Callable[[StreamReader], None] | None = None,
        client: ClassroomClient | None = None,
    ) -> None:
        self.request = request
        self.trajectory = TrajectoryView()
        self.state = StreamState(total_steps=request.num_inference_steps, expected_step_s=expected_step_s)
        self._client = client or get_client()  # the main service's, unless a page asks one beside it
        self._who = {"student": student_id(), "name": _name(), "address": browser_address()}
        self._lesson_entry = lesson_entry
        self._on_end = on_end
        self._lock = threading.Lock()
        self._call: grpc.Call | None = None
        self._thread = threading.Thread(target=self._read, name="classroom-stream", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            events = self._client.generate(
                self.request, self._who["student"], name=self._who["name"], address=self._who["address"],
                lesson_entry=self._lesson_entry, on_reconnect=self._reconnecting, on_call=self._sent,
            )  # fmt: skip
            for response in events:
                self.trajectory.add(response)  # before the state: a page told "step k" finds step k
                self.state.event(response)
            self.state.ended()
        except StudentError as error:
            self.state.failed(str(error), error.code)
        except Exception:  # the student gets a sentence; the log gets the trace
            log.exception("reading a generation failed")
            self.state.failed(FAILED_SENTENCE)
        finally:
            if self._on_end is not None:
                self._on_end(self)

    def _reconnecting(self, attempt: int, pause: float) -> None:
        self.state.reconnecting(attempt, pause, len(RECONNECT_DELAYS_S))

    def _sent(self, call: grpc.Call) -> None:
        with self._lock:
            self._call = call
        if self.state.stop_asked:
            call.cancel()

    def stop(self) -> None:
        """Stop it now: the status says so at once, and the service drops the work it no longer needs."""
        self.state.stop()
        with self._lock:
            call = self._call
        if call is not None:
            call.cancel()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the thread to finish reading (tests; pages follow with `follow`)."""
        self._thread.join(timeout)
        return not self._thread.is_alive()
