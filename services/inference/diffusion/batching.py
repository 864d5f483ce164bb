"""Sharing one GPU across a class: a bounded fair queue, step-level batching, and turns by cost.

One worker thread owns the model. Requests wait in a bounded queue, first come
first served, at most one per student (so no student can fill the queue, and
first come first served is round-robin between students), and, when classes
share a server, at most `max_queue_per_class` from one class. The queue is
bounded twice: by places (`max_queue`) and by work (`max_queue_work`, in
standard pictures, priced by `GenerationSpec.work`: steps x pixels x the costly
probes), counting the work waiting and the work left on running pictures, so a
few 100-step 768-pixel requests cannot hold the GPU as long as a whole class would
(one request alone is capped by `validation`, `settings.max_request_work`).

Up to `max_batch_size` generations run at once; every step, the generations of
one latent size (a group) share a single UNet call, each with its own timestep,
guidance scale, scheduler and generator. Groups of different sizes share the
machine by work, not by steps (`FairTurns`): the group that has had the least
work so far runs next, so a 128-pixel picture's step (four 64-pixel steps of
work) comes once for about four steps of a classmate's standard picture. Pictures
at a size other than the model's own run one size at a time (the others wait,
keeping their place), so at most two groups take turns and a standard picture
gets at least half the machine. Generations join between steps as others finish
or are cancelled; a cancelled one leaves at the next step boundary.

The worker never waits on the network, Redis or image encoding: everything it
produces goes to the server's event loop with `call_soon_threadsafe`.

(Longer than our usual file: the queue's state is guarded by one lock that the
server's thread and the worker share, and it reads best in one place.)
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from services.inference.diffusion.denoise import Generation, finish_together, predict_noise
from services.inference.diffusion.events import ErrorEvent, Event, QueueEvent, StepEvent, Stopwatch
from services.inference.diffusion.models import DiffusionModel
from services.inference.diffusion.spec import GenerationSpec
from services.inference.metrics import Metrics
from services.inference.refusals import AddressBusy, QueueFull, StudentBusy, WorkFull

log = logging.getLogger(__name__)

MODEL_FAILURE = "Something went wrong inside the model while generating. Please try again."
# Generations that end at the same step share a decoder call, this many at most: the decoder's
# activations at 512 px take far more memory per image than the UNet's, and one call of 8 has most of the gain.
DECODE_BATCH = 8
QUEUE_CLEARED = "Your teacher cleared the queue, so this picture was not made. You can ask for it again."


@dataclass(frozen=True)
class Requester:
    """Who asks for a generation: the student (one at a time), their display name, their class, their machine."""

    student: str
    name: str = ""
    classroom: str = ""
    address: str = ""  # the browser's address: one machine may not hold many places (several names)


class Outcome(enum.Enum):
    """How a generation left the scheduler."""

    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"


@dataclass
class SchedulerStats:
    generations_started: int = 0
    generations_completed: int = 0
    generations_cancelled: int = 0
    generations_failed: int = 0
    denoising_steps: int = 0
    unet_calls: int = 0
    active_generations: int = 0
    queued_generations: int = 0
    rejected_queue_full: int = 0
    rejected_student_busy: int = 0


@dataclass(frozen=True)
class JobView:
    """One generation as the teacher's page sees it."""

    student_name: str
    classroom: str
    prompt: str
    running: bool
    position: int  # in the queue (1: next); 0 while running
    steps_done: int
    total_steps: int
    seconds: float  # since it was asked for


class FairTurns:
    """Which group of generations runs the next step: the one that has had the least work so far.

    Stride scheduling: each group is charged its step's price each time it runs, and
    the least charged goes next (ties: the smaller latent first). A group that joins
    starts level with the least charged of those running, so it neither waits for the
    others' past work nor gets a burst of its own. Prices are what `GenerationSpec.step_work`
    says, not times: the turns are the same on every machine, and a test can count them.
    """

    def __init__(self) -> None:
        self._charged: dict[tuple[int, int], float] = {}

    def next(self, step_prices: dict[tuple[int, int], float]) -> tuple[int, int]:
        """The group to run now, among those with generations (each with the price of its next step); charges it."""
        self._charged = {group: work for group, work in self._charged.items() if group in step_prices}
        level = min(self._charged.values(), default=0.0)
        for group in step_prices:
            self._charged.setdefault(group, level)
        group = min(step_prices, key=lambda g: (self._charged[g], g))
        self._charged[group] += step_prices[group]
        return group


@dataclass(eq=False)
class Job:
    """A submitted generation: its events flow to an asyncio queue on the server's loop."""

    spec: GenerationSpec
    requester: Requester
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    submitted_at: float = field(default_factory=time.perf_counter)
    position: int = 0  # last position announced

    @property
    def student(self) -> str:
        return self.requester.student

    @property
    def work(self) -> float:
        """What the job costs the GPU (`GenerationSpec.work`: steps x pixels x the costly probes)."""
        return self.spec.work

    def emit(self, event: Event) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self.cancelled.set()

    def cancel(self) -> None:
        self.cancelled.set()


@dataclass(eq=False)
class _Running:
    job: Job
    generation: Generation
    started_at: float
    group: tuple[int, int]  # latent height and width

    @property
    def work_left(self) -> float:
        """The work of the steps it has still to run."""
        spec = self.job.spec
        return max(0, spec.steps - self.generation.step_index) * spec.step_work


class BatchScheduler:
    """Owns the model on one worker thread; batches the steps of the generations it runs."""

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
        self.standard_work = max(1.0, standard_work)  # the work of one standard picture (validation.standard_work)
        self.max_queue_per_class = max_queue_per_class  # 0: no share per class
        self.max_per_address = max_per_address  # 0: no limit per browser address
        self.metrics = metrics
        self._lock = threading.Condition()
        self._waiting: deque[Job] = deque()
        self._running: list[_Running] = []
        self._students: dict[str, Job] = {}  # each student's one job, waiting or running
        self._stats = SchedulerStats()
        self._closing = False
        self._paused = False
        self._turns = FairTurns()
        factor = model.vae_downsample_factor
        self._native_group = (model.default_size // factor, model.default_size // factor)
        # The last step's frames, held until the next step is queued behind them (see `_step`).
        self._unsent: list[tuple[Job, StepEvent]] = []
        self._last_unet: Stopwatch | None = None  # the last UNet call in the metrics
        self._average_seconds = 10.0  # a generation's wall time, smoothed, for retry hints
        self.average_batch = 0.0  # generations per UNet call, smoothed, for the teacher's page
        self._thread = threading.Thread(target=self._work, name="diffusion-runner", daemon=True)
        self._thread.start()

    # -- the server's side (event loop thread) ------------------------------

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

    def close(self, timeout: float | None = None) -> None:
        with self._lock:
            self._closing = True
            self._lock.notify()
        self._thread.join(timeout)

    # -- the worker thread ----------------------------------------------------

    def _announce_positions(self) -> None:
        for index, job in enumerate(self._waiting, start=1):
            if job.position != index:
                job.position = index
                job.emit(QueueEvent(position=index, waiting=len(self._waiting)))
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

    def _group_of(self, spec: GenerationSpec) -> tuple[int, int]:
        factor = self.model.vae_downsample_factor
        return spec.height // factor, spec.width // factor

    def _admit(self) -> list[Job]:
        """Move waiting jobs into the running set while there is room. Call with the lock held.

        Pictures at a size other than the model's own run one size at a time: a job of a
        second such size keeps its place and lets the jobs of the model's size behind it
        start (it starts when the size before it is done; jobs of other sizes behind it wait
        behind it, so none overtakes it). Two groups at most then take turns, so a standard
        picture gets at least half the machine's work, however many large ones wait.
        """
        admitted = []
        other_sizes = {r.group for r in self._running} - {self._native_group}
        held_back = False  # a job of another size waits: later ones of any other size wait behind it (no overtaking)
        for job in list(self._waiting):
            if len(self._running) + len(admitted) >= self.max_batch_size:
                break
            if job.cancelled.is_set():
                continue  # left below
            group = self._group_of(job.spec)
            if group != self._native_group:
                if held_back or (other_sizes and group not in other_sizes):
                    held_back = True
                    continue
                other_sizes.add(group)
            self._waiting.remove(job)
            admitted.append(job)
        cancelled_waiting = [job for job in self._waiting if job.cancelled.is_set()]
        for job in cancelled_waiting:
            self._waiting.remove(job)
            self._release(job, Outcome.CANCELLED)
        if admitted or cancelled_waiting:
            self._announce_positions()
        return admitted

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._closing and (self._paused or (not self._waiting and not self._running)):
                    if any(r.job.cancelled.is_set() for r in self._running):  # stopped while paused
                        self._drop_cancelled()
                        continue
                    if self._unsent:  # nothing will be queued behind them before the wait: they go now
                        self._lock.release()
                        try:
                            self._send_frames()
                        finally:
                            self._lock.acquire()
                        continue
                    self._lock.wait()
                if self._closing:
                    break
                admitted = self._admit()
            for job in admitted:
                self._start(job)
            self._drop_cancelled()
            if self._running:
                self._step(self._next_group())
        self._send_frames()  # the service stops: what was computed still goes out

    def _start(self, job: Job) -> None:
        group = self._group_of(job.spec)
        self.metrics.queue_seconds.observe(time.perf_counter() - job.submitted_at)
        try:
            generation = Generation(self.model, job.spec)
            job.emit(generation.start())
        except Exception:
            log.exception("could not start generation: %s", job.spec)
            job.emit(ErrorEvent(MODEL_FAILURE))
            with self._lock:
                self._release(job, Outcome.FAILED)
            return
        with self._lock:
            self._running.append(_Running(job, generation, time.perf_counter(), group))
            self._stats.generations_started += 1
        self.metrics.running.set(len(self._running))

    def _drop_cancelled(self) -> None:
        """Cancelled generations leave between steps; their tensors go with them (held frames are dropped)."""
        with self._lock:
            for running in [r for r in self._running if r.job.cancelled.is_set()]:
                self._running.remove(running)
                self._release(running.job, Outcome.CANCELLED)
        self.metrics.running.set(len(self._running))

    def _next_group(self) -> list[_Running]:
        """The generations of the latent size whose turn it is: the one that has had the least work (`FairTurns`).

        A group's step is priced at its generations' mean step price: their UNet rows
        share one call, which on a GPU costs little more than one row alone.
        """
        groups: dict[tuple[int, int], list[_Running]] = {}
        for running in self._running:
            groups.setdefault(running.group, []).append(running)
        batches = {group: members[: self.max_batch_size] for group, members in groups.items()}
        prices = {group: sum(r.job.spec.step_work for r in batch) / len(batch) for group, batch in batches.items()}
        return batches[self._turns.next(prices)]

    def _step(self, batch: list[_Running]) -> None:
        """One denoising step for every generation in `batch`, through one UNet call.

        On a GPU the step is only queued here. The previous step's frames are sent
        once this UNet call is queued behind their copies: waiting for those copies
        then leaves the GPU busy, and the Python of the next step (and the encoding
        of frames on the server's thread) overlaps the device's work instead of
        following it. Each frame thus reaches its reader one step later.
        """
        try:
            with torch.inference_mode():
                pairs, unet = predict_noise(self.model, [r.generation for r in batch])
        except Exception:
            log.exception("UNet call failed for a batch of %d", len(batch))
            self._finish(batch, failed=True)
            return
        self._send_frames()
        self.metrics.batch_size.observe(len(batch))
        self.average_batch = len(batch) if not self.average_batch else 0.9 * self.average_batch + 0.1 * len(batch)
        with self._lock:
            self._stats.unet_calls += 1
            self._stats.denoising_steps += len(batch)
        ended: list[_Running] = []
        for running, pair in zip(batch, pairs, strict=True):
            try:
                event = running.generation.finish_step(pair, unet, batch_size=2 * len(batch))
                self._unsent.append((running.job, event))
                if running.generation.done:
                    ended.append(running)
            except Exception:
                log.exception("step failed: %s", running.job.spec)
                self._finish([running], failed=True)
        for start in range(0, len(ended), DECODE_BATCH):
            self._finish(ended[start : start + DECODE_BATCH])

    def _send_frames(self) -> None:
        """Send the held frames, once their copies are on the host (a stopped job's are dropped)."""
        unsent, self._unsent = self._unsent, []
        for job, event in unsent:
            event.copied()
            if event.unet is not self._last_unet:  # one UNet call, whatever the size of its batch
                self._last_unet = event.unet
                self.metrics.step_seconds.observe(event.unet_seconds)
            if not job.cancelled.is_set():
                job.emit(event)

    def _finish(self, ended: list[_Running], failed: bool = False) -> None:
        """Generations that ended at this step (of one latent size): their images, through one decoder call."""
        self._send_frames()  # a job's frames before its end
        events: list[Event] = [ErrorEvent(MODEL_FAILURE)] * len(ended)
        if not failed:
            now = time.perf_counter()
            try:
                events = list(finish_together(
                    [r.generation for r in ended],
                    [r.started_at - r.job.submitted_at for r in ended],
                    [now - r.started_at for r in ended],
                ))  # fmt: skip
            except Exception:
                log.exception("decode failed: %s", [r.job.spec for r in ended])
                failed = True
        for running, event in zip(ended, events, strict=True):
            elapsed = time.perf_counter() - running.started_at
            # The student is free again before they hear the end, so their next request is welcome.
            with self._lock:
                self._running.remove(running)
                self._release(running.job, Outcome.FAILED if failed else Outcome.COMPLETED)
                self._average_seconds = 0.8 * self._average_seconds + 0.2 * elapsed
            self.metrics.running.set(len(self._running))
            running.job.emit(event)
