"""The queue's side of the GPU: who may wait for it, in what order, and what the teacher sees and does.

A bounded queue, first come first served, at most one generation per student (so
no student can fill it, and first come first served is round-robin between
students), and, when classes share a server, at most `max_queue_per_class` from
one class. It is bounded twice: by places (`max_queue`) and by work
(`max_queue_work`, in standard pictures, priced by `GenerationSpec.work`: steps x
pixels x the costly probes), counting the work waiting and the work left on
running pictures, so a few 100-step 768-pixel requests cannot hold the GPU as long
as a whole class would (one request alone is capped by `classroom/validation.py`,
`settings.max_request_work`).

These methods run on the server's event loop thread; the worker thread that
takes jobs off the queue is `batching.BatchScheduler`, built on this class. One
lock (`_lock`) guards the state both threads share.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections import deque
from collections.abc import Callable

from services.inference.diffusion.events import ErrorEvent, Event, QueueEvent
from services.inference.diffusion.jobs import (
    QUEUE_CLEARED,
    Job,
    JobView,
    Outcome,
    Requester,
    Running,
    SchedulerStats,
    emit_all,
)
from services.inference.diffusion.models import DiffusionModel
from services.inference.diffusion.spec import GenerationSpec
from services.inference.metrics import Metrics
from services.inference.refusals import AddressBusy, QueueFull, StudentBusy, WorkFull


class WorkQueue:
    """The waiting jobs and the running ones, the refusal rules, and the teacher's pause and clear."""

    def __init__(
        self,
        model: DiffusionModel,
        max_batch_size: int,
        max_queue: int,
        metrics: Metrics,
        max_queue_per_class: int = 0,
        max_per_address: int = 0,
        max_queue_work: float = 0.0,
        standard_work: float = 1.0,
    ) -> None:
        self.model = model
        self.max_batch_size = max_batch_size
        self.max_queue = max_queue
        self.max_queue_work = max_queue_work  # in standard pictures, waiting and left to run; 0: by places only
        self.standard_work = max(1.0, standard_work)  # the work of one standard picture (spec.standard_work)
        self.max_queue_per_class = max_queue_per_class  # 0: no share per class
        self.max_per_address = max_per_address  # 0: no limit per browser address
        self.metrics = metrics
        self._lock = threading.Condition()
        self._waiting: deque[Job] = deque()
        self._running: list[Running] = []
        self._students: dict[str, Job] = {}  # each student's one job, waiting or running
        self._stats = SchedulerStats()
        self._closing = False
        self._paused = False
        self._average_seconds = 10.0  # a generation's wall time, smoothed, for retry hints

    def stats(self) -> SchedulerStats:
        with self._lock:
            return dataclasses.replace(
                self._stats, active_generations=len(self._running), queued_generations=len(self._waiting)
            )

    @property
    def paused(self) -> bool:
        return self._paused

    def pause(self, paused: bool) -> None:
        """Hold every generation between steps (and start none) until resumed; cache hits go on."""
        with self._lock:
            self._paused = paused
            self._lock.notify()
        self.metrics.paused.set(int(paused))

    def clear_queue(self) -> int:
        """Drop every waiting generation (running ones finish); their students are told why."""
        with self._lock:
            cleared = list(self._waiting)
            self._stop(cleared, QUEUE_CLEARED)
        return len(cleared)

    def stop_jobs_of(self, chosen: Callable[[Requester], bool], sentence: str) -> int:
        """Stop every generation, waiting or running, whose requester is `chosen`; its readers get `sentence`."""
        with self._lock:
            jobs = [job for job in (*self._waiting, *self._jobs_running()) if chosen(job.requester)]
            self._stop(jobs, sentence)
            self._lock.notify()
        return len(jobs)

    def _stop(self, jobs: list[Job], sentence: str | None = None) -> None:
        """Stop jobs (lock held); with a `sentence`, their readers are told why (ABORTED).

        A waiting one leaves the queue now, a running one at the next step boundary
        (`_drop_cancelled`); either way its student may ask again at once.
        """
        for job in jobs:
            job.cancel()
            if job in self._waiting:  # (a closed tab's place goes to the next student even while paused)
                self._waiting.remove(job)
                self._release(job, Outcome.CANCELLED)
            elif self._students.get(job.student) is job:
                del self._students[job.student]
            if sentence is not None:
                job.emit(ErrorEvent(sentence, aborted=True))
        self._announce_positions()

    def jobs(self) -> list[JobView]:
        """Running generations, then the queue in order."""
        now = time.perf_counter()
        with self._lock:
            running = [
                JobView(r.job.requester.name, r.job.requester.classroom, r.job.spec.prompt, True, 0,
                        r.generation.step_index, len(r.generation.timesteps), now - r.job.submitted_at)
                for r in self._running
            ]  # fmt: skip
            waiting = [
                JobView(
                    job.requester.name,
                    job.requester.classroom,
                    job.spec.prompt,
                    False,
                    index,
                    0,
                    0,
                    now - job.submitted_at,
                )
                for index, job in enumerate(self._waiting, start=1)
            ]
        return running + waiting

    def _jobs_running(self) -> list[Job]:
        return [running.job for running in self._running]

    def _work_ahead(self) -> float:
        """The work waiting and left to run on the running pictures (not the `_unsent` frames). Lock held."""
        return sum(job.work for job in self._waiting) + sum(r.work_left for r in self._running)

    def _refusal(
        self, requester: Requester, spec: GenerationSpec | None
    ) -> tuple[str, StudentBusy | QueueFull | AddressBusy] | None:
        """Why the scheduler would refuse this student (and this work) now (metric label, refusal), or None.

        Lock held.
        """
        if requester.student in self._students:
            return "student_busy", StudentBusy()
        if len(self._waiting) >= self.max_queue:
            return "queue_full", QueueFull(len(self._waiting), self._retry_after(len(self._waiting)))
        if self.max_queue_work and spec is not None and (self._waiting or self._running):
            # An idle server takes any request validation allowed (one request's own ceiling is
            # `settings.max_request_work`, below this bound); otherwise the running pictures'
            # steps still to come count as much as the waiting ones.
            ahead = self._work_ahead()
            if (ahead + spec.work) / self.standard_work > self.max_queue_work:
                pictures = ahead / self.standard_work
                retry = self._retry_after(round(pictures))
                if not self._waiting:
                    return "queue_work_full", WorkFull(pictures, retry)
                return "queue_work_full", QueueFull(len(self._waiting), retry)
        if self.max_per_address and requester.address:
            held = sum(job.requester.address == requester.address for job in (*self._waiting, *self._jobs_running()))
            if held >= self.max_per_address:
                return "address_busy", AddressBusy(held)
        if self.max_queue_per_class:
            ahead = sum(job.requester.classroom == requester.classroom for job in self._waiting)
            if ahead >= self.max_queue_per_class:
                return "class_queue_full", QueueFull(ahead, self._retry_after(ahead), classroom=requester.classroom)
        return None

    def check(self, requester: Requester, spec: GenerationSpec | None = None) -> None:
        """Raise what `submit` would raise now (and count it), so a refusal comes before anything is spent."""
        with self._lock:
            self._refuse_if_needed(requester, spec)

    def _refuse_if_needed(self, requester: Requester, spec: GenerationSpec | None) -> None:
        """Count and raise the scheduler's refusal for this student, if there is one. Lock held."""
        refusal = self._refusal(requester, spec)
        if refusal is not None:
            label, error = refusal
            self.metrics.rejected.labels(label).inc()
            if isinstance(error, StudentBusy | AddressBusy):
                self._stats.rejected_student_busy += 1
            else:
                self._stats.rejected_queue_full += 1
            raise error

    def submit(self, spec: GenerationSpec, requester: Requester) -> Job:
        """Queue a generation, or refuse: StudentBusy, AddressBusy, QueueFull (places, work, or the class's share)."""
        with self._lock:
            self._refuse_if_needed(requester, spec)
            job = Job(spec=spec, requester=requester, loop=asyncio.get_running_loop())
            self._students[requester.student] = job
            self._waiting.append(job)
            self._announce_positions()
            self._lock.notify()
        return job

    def _retry_after(self, waiting: int) -> float:
        """Seconds until about `waiting` generations have gone through, from recent generation times."""
        waves = 1 + waiting // max(1, self.max_batch_size)
        return round(waves * self._average_seconds)

    def cancel(self, job: Job) -> None:
        """Stop a job: waiting, it leaves the queue now; running, at the next step boundary.

        Its student may ask again at once.
        """
        with self._lock:
            self._stop([job])
            self._lock.notify()  # a paused worker lets go of a running one's tensors now

    def _announce_positions(self) -> None:
        moved: list[tuple[Job, Event]] = []
        for index, job in enumerate(self._waiting, start=1):
            if job.position != index:
                job.position = index
                moved.append((job, QueueEvent(position=index, waiting=len(self._waiting))))
        emit_all(moved)
        self.metrics.queue_length.set(len(self._waiting))

    def _release(self, job: Job, outcome: Outcome) -> None:
        """A job leaves (done, cancelled, failed): its student may ask again. Call with the lock held."""
        if self._students.get(job.student) is job:
            del self._students[job.student]
        if outcome is Outcome.COMPLETED:
            self._stats.generations_completed += 1
        elif outcome is Outcome.CANCELLED:
            self._stats.generations_cancelled += 1
        else:
            self._stats.generations_failed += 1
