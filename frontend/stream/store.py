"""The front end's process-wide store: finished lesson trajectories for every session, and the ones being read.

Two students opening the same uncomputed example follow one stream; what this
process has timed lately says how long the next wait will be.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import streamlit as st

from frontend.stream.progress import Phase
from frontend.stream.reader import StreamReader
from frontend.stream.wire import TrajectoryView
from services.common.api import pb


class Pace:
    """Seconds per step this server has taken lately, per picture size, to say how long a wait will be."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._per_pixel: dict[int, float] = {}  # pixels -> seconds per step, smoothed

    def learn(self, request: pb.GenerateRequest, seconds_per_step: float) -> None:
        pixels = request.width * request.height
        if pixels <= 0 or seconds_per_step <= 0:
            return
        with self._lock:
            known = self._per_pixel.get(pixels)
            self._per_pixel[pixels] = seconds_per_step if known is None else 0.7 * known + 0.3 * seconds_per_step

    def expect(self, request: pb.GenerateRequest) -> float | None:
        """The expected seconds per step (scaled from the nearest size seen), or None before any run."""
        pixels = request.width * request.height
        with self._lock:
            if not self._per_pixel or pixels <= 0:
                return None
            nearest = min(self._per_pixel, key=lambda known: abs(known - pixels))
            return self._per_pixel[nearest] * pixels / nearest


class LessonStore:
    """Finished trajectories for every session of this process (the newest `keep`), and the ones being read.

    Two students opening the same uncomputed example follow one stream; a student who
    leaves the page leaves it running, so it is ready when someone comes back.
    """

    def __init__(self, keep: int = 128) -> None:
        self.keep = keep
        self.pace = Pace()
        self._lock = threading.Lock()
        self._done: OrderedDict[bytes, TrajectoryView] = OrderedDict()
        self._running: dict[bytes, StreamReader] = {}

    def finished(self, key: bytes) -> TrajectoryView | None:
        with self._lock:
            trajectory = self._done.get(key)
            if trajectory is not None:
                self._done.move_to_end(key)
            return trajectory

    def reader(self, key: bytes, start: Callable[[Callable[[StreamReader], None]], StreamReader]) -> StreamReader:
        """The stream reading `key`, started with `start(on_end)` unless one already is."""
        with self._lock:
            running = self._running.get(key)
            if running is None:
                running = self._running[key] = start(lambda reader: self._settle(key, reader))
            return running

    def _settle(self, key: bytes, reader: StreamReader) -> None:
        state = reader.state.snapshot()
        trajectory = reader.trajectory
        with self._lock:
            if self._running.get(key) is reader:
                del self._running[key]  # a failed one is tried again by the next page that asks
            if state.phase == Phase.DONE and trajectory.image is not None:
                self._done[key] = trajectory
                while len(self._done) > self.keep:
                    self._done.popitem(last=False)
        if state.phase == Phase.DONE and trajectory.steps and reader.request.width:
            if trajectory.source == pb.TRAJECTORY_SOURCE_COMPUTED and state.seconds_per_step:
                self.pace.learn(reader.request, state.seconds_per_step)
            elif self.pace.expect(reader.request) is None:  # the service's own step times, as a first guess
                self.pace.learn(reader.request, sum(s.seconds for s in trajectory.steps) / len(trajectory.steps))

    def clear(self) -> None:
        with self._lock:
            self._done.clear()
            self._running.clear()


@st.cache_resource
def lesson_store() -> LessonStore:
    """The one store of this front-end process."""
    return LessonStore()
