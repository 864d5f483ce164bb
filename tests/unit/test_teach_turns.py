"""A class's training takes turns with the generations on the worker that owns the model (lesson 10).

On the simulated GPU, whose UNet calls are recorded instead of slept: the training's steps
come between the generations' steps, never at the same time, a stopped training ends at
its next turn, and a failing one ends with a failure while the generations go on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading

import pytest
import torch

from services.inference.diffusion.batching import BatchScheduler
from services.inference.diffusion.events import FinalEvent
from services.inference.diffusion.jobs import Requester
from services.inference.diffusion.simulated import H100, SIMULATED_H100, SimulatedModel
from services.inference.diffusion.spec import GenerationSpec
from services.inference.diffusion.training import Ended, TrainingJob
from services.inference.metrics import Metrics


@pytest.fixture(autouse=True)
def threads_kept():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


class Log:
    """What ran, in order, and a check that two things never ran at once."""

    def __init__(self) -> None:
        self.entries: list[str] = []
        self._busy = threading.Lock()

    def ran(self, what: str) -> None:
        assert self._busy.acquire(blocking=False), f"{what} ran while something else was running"
        try:
            self.entries.append(what)
        finally:
            self._busy.release()


def spec(steps: int) -> GenerationSpec:
    return GenerationSpec("a red circle", "", 1, steps, 7.5, 512, 512, "dpm_solver_pp", frozenset())


def training(log: Log, steps: int, fail_at: int = 0):
    def run(emit, should_stop) -> str | None:
        for step in range(1, steps + 1):
            if should_stop():
                return None
            if step == fail_at:
                raise RuntimeError("out of memory")
            log.ran(f"train {step}")
            emit(step)
        return "the word"

    return run


async def events_until_end(queue: asyncio.Queue) -> list[object]:
    events = []
    while not events or not isinstance(events[-1], Ended):
        events.append(await asyncio.wait_for(queue.get(), 60))
    return events


def scheduler_for(log: Log) -> BatchScheduler:
    model = SimulatedModel(SIMULATED_H100, H100, sleep=lambda seconds: log.ran("unet"))
    return BatchScheduler(model, max_batch_size=4, max_queue=8, metrics=Metrics())


async def test_training_steps_take_turns_with_a_generation_and_never_run_beside_it():
    log = Log()
    scheduler = scheduler_for(log)
    loop = asyncio.get_running_loop()
    reports: asyncio.Queue = asyncio.Queue()
    try:
        scheduler.pause(True)  # both start together
        job = scheduler.submit(spec(steps=6), Requester("s1", classroom="owls"))
        # A training step priced as one step of the generation: they alternate.
        teaching = TrainingJob("owls", spec(6).step_work, training(log, 6),
                               lambda e: loop.call_soon_threadsafe(reports.put_nowait, e))  # fmt: skip
        assert scheduler.train(teaching)
        assert not scheduler.train(TrainingJob("owls", 1.0, training(log, 1), print))  # one per class
        scheduler.pause(False)
        events = await events_until_end(reports)
        while not isinstance(await asyncio.wait_for(job.events.get(), 60), FinalEvent):
            pass
    finally:
        scheduler.close(5)
    assert events[:-1] == [1, 2, 3, 4, 5, 6]
    assert events[-1] == Ended("the word", stopped=False)
    assert log.entries.count("unet") == 6 and log.entries.count("train 6") == 1
    first_train, last_unet = log.entries.index("train 1"), len(log.entries) - 1 - log.entries[::-1].index("unet")
    assert first_train < last_unet  # the training did not wait for the generation to end
    assert "unet" in log.entries[log.entries.index("train 1") : log.entries.index("train 6")]
    assert scheduler.training("owls") is None  # gone once ended


async def test_a_stopped_training_ends_at_its_next_turn_and_a_failed_one_says_so():
    log = Log()
    scheduler = scheduler_for(log)
    loop = asyncio.get_running_loop()
    try:
        stopped: asyncio.Queue = asyncio.Queue()
        scheduler.pause(True)
        teaching = TrainingJob("owls", 1.0, training(log, 1000),
                               lambda e: loop.call_soon_threadsafe(stopped.put_nowait, e))  # fmt: skip
        scheduler.train(teaching)
        assert scheduler.stop_training("owls") and not scheduler.stop_training("foxes")
        events = await events_until_end(stopped)  # stopped while paused: it still ends
        assert events == [Ended(None, stopped=True)]
        scheduler.pause(False)

        failed: asyncio.Queue = asyncio.Queue()
        scheduler.train(TrainingJob("foxes", 1.0, training(log, 10, fail_at=3),
                                    lambda e: loop.call_soon_threadsafe(failed.put_nowait, e)))  # fmt: skip
        events = await events_until_end(failed)
        assert events[:-1] == [1, 2] and events[-1].failed and events[-1].taught is None
        # The worker goes on serving generations.
        job = scheduler.submit(spec(steps=2), Requester("s2", classroom="foxes"))
        while not isinstance(await asyncio.wait_for(job.events.get(), 60), FinalEvent):
            pass
    finally:
        scheduler.close(5)
    assert "train 1000" not in log.entries


async def test_a_class_model_is_held_while_its_pictures_are_queued_and_let_go_when_they_end(monkeypatch):
    """The scheduler holds a class's model from a picture's queueing to its end, so the LRU cannot drop it."""
    monkeypatch.setattr("services.inference.diffusion.taught.with_word", lambda model, word: model)

    class Word:
        def digest(self) -> str:
            return "owls-word"

    scheduler = scheduler_for(Log())
    try:
        scheduler.pause(True)  # the pictures wait in the queue
        scheduler.taught.kept = 2
        scheduler.taught.add(Word())
        held = scheduler.submit(dataclasses.replace(spec(steps=2), taught="owls-word"), Requester("s1"))
        again = scheduler.submit(dataclasses.replace(spec(steps=2), taught="owls-word", seed=2), Requester("s2"))
        for digest in ("a", "b", "c", "d") * 5:  # more classes' words than are kept
            scheduler.taught.add(type("W", (), {"digest": lambda self, d=digest * 3: d})())
        assert scheduler.taught.has("owls-word")
        scheduler.cancel(held)
        assert scheduler.taught.has("owls-word")  # the other picture still needs it
        scheduler.pause(False)
        while not isinstance(await asyncio.wait_for(again.events.get(), 60), FinalEvent):
            pass
        for digest in ("e", "f"):  # let go: the next words push it out
            scheduler.taught.add(type("W", (), {"digest": lambda self, d=digest * 3: d})())
        assert not scheduler.taught.has("owls-word")
    finally:
        scheduler.close(5)
