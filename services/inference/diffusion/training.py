"""A class teaching its model a word (lesson 10), run by the worker that owns the model, a step at a time.

The training itself (`teach.teach`) is one blocking loop that asks `should_stop()` before
each of its steps. It runs on a thread of its own, but never at the same time as the
worker's generations: the worker grants it a turn (`step`), the training runs until its
next `should_stop()`, hands the turn back, and waits for the next. So the batching worker
decides when the class's training runs, as it decides which generations step next
(`FairTurns`): a training step is charged its price like any group's step, and the
class's classmates (and other classes) keep their share of the machine.

The training's reports (`TeachProgress`, the taught word, a failure) go to the server's
event loop through `emit`, which must be safe to call from another thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

log = logging.getLogger(__name__)

# What `run` is given: the progress callback and the should-stop question; it returns the taught word.
Run = Callable[[Callable[[Any], None], Callable[[], bool]], Any]


@dataclass(frozen=True)
class Ended:
    """The training's end: the taught word, or None with a reason (stopped, or failed)."""

    taught: Any | None
    stopped: bool = False
    failed: bool = False


class TrainingJob:
    """One class's training, advanced by the worker one turn at a time (see the module's docstring)."""

    def __init__(
        self, classroom: str, price: float, run: Run, emit: Callable[[object], None], threads: int = 0
    ) -> None:
        self.classroom = classroom
        self.threads = threads  # torch threads of the training's own thread (0: torch's count)
        self.price = price  # what one of its steps costs, in the units of `GenerationSpec.step_work`
        self._run, self._emit = run, emit
        self._turn = threading.Semaphore(0)  # the worker gives the training a turn
        self._turn_over = threading.Semaphore(0)  # the training gives it back
        self.cancelled = threading.Event()
        self.ended = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False

    def cancel(self) -> None:
        """Stop at the next step (the worker gives it one last turn to end in)."""
        self.cancelled.set()

    @property
    def started(self) -> bool:
        return self._thread is not None

    def step(self) -> None:
        """Worker thread: let the training run until it asks again (one step), and wait for it."""
        if self.ended.is_set():
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._main, name=f"teach-{self.classroom[:16]}", daemon=True)
            self._thread.start()
        self._turn.release()
        self._turn_over.acquire()

    def _should_stop(self) -> bool:
        """Training thread, before each step: hand the turn back, wait for the next, then say whether to stop."""
        if self._started:
            self._turn_over.release()
        self._started = True
        self._turn.acquire()
        return self.cancelled.is_set()

    def _main(self) -> None:
        threads = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)  # this thread's own count; the worker keeps its own
        self._should_stop_first()
        ended = Ended(None, failed=True)
        try:
            taught = self._run(self._emit, self._should_stop)
            ended = Ended(taught, stopped=self.cancelled.is_set() or taught is None)
        except Exception:
            log.exception("teaching a word failed for a class")
        finally:
            torch.set_num_threads(threads)  # threads started later take the count last set: put it back
            self.ended.set()
            self._emit(ended)
            self._turn_over.release()  # the worker's last turn is over

    def _should_stop_first(self) -> None:
        """The training starts only in its first turn (the thread is started from within `step`)."""
        self._turn.acquire()
        self._started = True
