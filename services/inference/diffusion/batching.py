"""Sharing one GPU across a class: step-level batching, and turns by cost.

One worker thread owns the model and takes jobs off the queue (`work_queue.WorkQueue`,
which this scheduler extends). Up to `max_batch_size` generations run at once;
every step, the generations of one latent size (a group) share a single UNet call,
each with its own timestep, guidance scale, scheduler and generator. Groups of
different sizes share the machine by work, not by steps (`FairTurns`): the group
that has had the least work so far runs next, so a 128-pixel picture's step (four
64-pixel steps of work) comes once for about four steps of a classmate's standard
picture. Pictures at a size other than the model's own run one size at a time (the
others wait, keeping their place), so at most two groups take turns and a standard
picture gets at least half the machine. Generations join between steps as others
finish or are cancelled; a cancelled one leaves at the next step boundary. A class's
own model (lesson 10: a prompt with the word it taught) is a group of its own, and a
class teaching its model a word takes turns as a group too, one training step a turn
(`training.py`).

The worker never waits on the network, Redis or image encoding: everything it
produces goes to the server's event loop with `call_soon_threadsafe`.
"""

from __future__ import annotations

import logging
import threading
import time

import torch

from services.inference.diffusion.batched_step import steps_together, together
from services.inference.diffusion.denoise import Generation, finish_together, predict_noise
from services.inference.diffusion.events import ErrorEvent, Event, HeaderEvent, StepEvent, Stopwatch
from services.inference.diffusion.jobs import MODEL_FAILURE, Job, Outcome, Requester, Running, emit_all
from services.inference.diffusion.models import DiffusionModel
from services.inference.diffusion.spec import GenerationSpec
from services.inference.diffusion.taught import TaughtModels
from services.inference.diffusion.training import TrainingJob
from services.inference.diffusion.work_queue import WorkQueue
from services.inference.metrics import Metrics

log = logging.getLogger(__name__)

# Generations that end at the same step share a decoder call, this many at most: the decoder's
# activations at 512 px take far more memory per image than the UNet's, and one call of 8 has most of the gain.
DECODE_BATCH = 8


# A group: the latent's height and width, and the class model's digest ("": the model itself),
# or (0, 0, "teach:<class>") for a class's training.
Group = tuple[int, int, str]


class FairTurns:
    """Which group of generations runs the next step: the one that has had the least work so far.

    Stride scheduling: each group is charged its step's price each time it runs, and
    the least charged goes next (ties: the smaller latent first). A group that joins
    starts level with the least charged of those running, so it neither waits for the
    others' past work nor gets a burst of its own. Prices are what `GenerationSpec.step_work`
    says, not times: the turns are the same on every machine, and a test can count them.
    """

    def __init__(self) -> None:
        self._charged: dict[Group, float] = {}

    def next(self, step_prices: dict[Group, float]) -> Group:
        """The group to run now, among those with generations (each with the price of its next step); charges it."""
        self._charged = {group: work for group, work in self._charged.items() if group in step_prices}
        level = min(self._charged.values(), default=0.0)
        for group in step_prices:
            self._charged.setdefault(group, level)
        group = min(step_prices, key=lambda g: (self._charged[g], g))
        self._charged[group] += step_prices[group]
        return group


class BatchScheduler(WorkQueue):
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
        super().__init__(
            model,
            max_batch_size,
            max_queue,
            metrics,
            max_queue_per_class,
            max_per_address,
            max_queue_work,
            standard_work,
        )
        self._turns = FairTurns()
        factor = model.vae_downsample_factor
        self._native_size = (model.default_size // factor, model.default_size // factor)
        self.taught = TaughtModels(model)  # the classes' own models (lesson 10)
        self._training: dict[str, TrainingJob] = {}  # by class: the words being taught
        # The last step's frames, held until the next step is queued behind them (see `_step`).
        self._unsent: list[tuple[Job, StepEvent]] = []
        self._last_unet: Stopwatch | None = None  # the last UNet call in the metrics
        self.average_batch = 0.0  # generations per UNet call, smoothed, for the teacher's page
        self._thread = threading.Thread(target=self._work, name="diffusion-runner", daemon=True)
        self._thread.start()

    def close(self, timeout: float | None = None) -> None:
        with self._lock:
            self._closing = True
            self._lock.notify()
        self._thread.join(timeout)
        for job in list(self._training.values()):  # a class's training ends with its worker
            job.cancel()
            if job.started:  # one never started has nothing to end (and its setup must not run here)
                job.step()

    def _group_of(self, spec: GenerationSpec) -> Group:
        factor = self.model.vae_downsample_factor
        return spec.height // factor, spec.width // factor, spec.taught

    # -- a class teaching its model a word (lesson 10) ------------------------------

    def submit(self, spec: GenerationSpec, requester: Requester) -> Job:
        """As `WorkQueue.submit`; a picture of a class's own model holds that model until it ends."""
        self.taught.hold(spec.taught)  # before it is queued: the worker may start (and end) it at once
        try:
            return super().submit(spec, requester)
        except BaseException:
            self.taught.let_go(spec.taught)
            raise

    def _release(self, job: Job, outcome: Outcome) -> None:
        super()._release(job, outcome)
        self.taught.let_go(job.spec.taught)

    def train(self, job: TrainingJob) -> bool:
        """Take a class's training into the turns; False if that class is training already."""
        with self._lock:
            if job.classroom in self._training:
                return False
            self._training[job.classroom] = job
            self._lock.notify()
        return True

    def stop_training(self, classroom: str) -> bool:
        """Stop the class's training at its next step; False if it has none."""
        with self._lock:
            job = self._training.get(classroom)
            if job is not None:
                job.cancel()
                self._lock.notify()
        return job is not None

    def training(self, classroom: str) -> TrainingJob | None:
        with self._lock:
            return self._training.get(classroom)

    def _train_step(self, job: TrainingJob) -> None:
        self._send_frames()  # the last step's frames go now, not after the training's step
        job.step()  # blocks this thread while the training runs one step
        if job.ended.is_set():
            with self._lock:
                self._training.pop(job.classroom, None)

    def _admit(self) -> list[Job]:
        """Move waiting jobs into the running set while there is room. Call with the lock held.

        Pictures at a size other than the model's own run one size at a time: a job of a
        second such size keeps its place and lets the jobs of the model's size behind it
        start (it starts when the size before it is done; jobs of other sizes behind it wait
        behind it, so none overtakes it). Two groups at most then take turns, so a standard
        picture gets at least half the machine's work, however many large ones wait.
        """
        admitted = []
        other_sizes = {r.group[:2] for r in self._running} - {self._native_size}
        held_back = False  # a job of another size waits: later ones of any other size wait behind it (no overtaking)
        for job in list(self._waiting):
            if len(self._running) + len(admitted) >= self.max_batch_size:
                break
            if job.cancelled.is_set():
                continue  # left below
            size = self._group_of(job.spec)[:2]
            if size != self._native_size:
                if held_back or (other_sizes and size not in other_sizes):
                    held_back = True
                    continue
                other_sizes.add(size)
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
                while not self._closing and (
                    self._paused or (not self._waiting and not self._running and not self._training)
                ):
                    if any(r.job.cancelled.is_set() for r in self._running):  # stopped while paused
                        self._drop_cancelled()
                        continue
                    if stopped := [t for t in self._training.values() if t.cancelled.is_set()]:
                        self._lock.release()  # stopped while paused: its last turn, to end in
                        try:
                            self._train_step(stopped[0])
                        finally:
                            self._lock.acquire()
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
            headers: list[tuple[Job, Event]] = []
            while admitted:
                headers += [(job, header) for job in admitted if (header := self._start(job)) is not None]
                # Those that came while these started join the same step: a class asking at once reaches
                # this thread over a few hundred milliseconds, and starting it takes a few milliseconds a
                # student; left for the next turn, they would wait out a whole UNet call and end a call later.
                with self._lock:
                    admitted = [] if self._paused or self._closing else self._admit()
            # The headers go once every start is made: encoding and sending them (the event loop's and the
            # encoders' work) then runs beside the UNet call, not between the starts on this thread.
            emit_all(headers)
            self._drop_cancelled()
            if self._running or self._training:
                turn = self._next_group()
                if isinstance(turn, TrainingJob):
                    self._train_step(turn)
                else:
                    self._step(turn)
        self._send_frames()  # the service stops: what was computed still goes out

    def _start(self, job: Job) -> HeaderEvent | None:
        """Start a generation (prompt encoded, scheduler and noise made): its header to send, or None if it failed."""
        group = self._group_of(job.spec)
        self.metrics.queue_seconds.observe(time.perf_counter() - job.submitted_at)
        try:
            model = self.taught.model_for(job.spec.taught)
            if model is None:
                raise LookupError(f"no class model {job.spec.taught} here")
            generation = Generation(model, job.spec)
            header = generation.start()
        except Exception:
            log.exception("could not start generation: %s", job.spec)
            job.emit(ErrorEvent(MODEL_FAILURE))
            with self._lock:
                self._release(job, Outcome.FAILED)
            return None
        with self._lock:
            self._running.append(Running(job, generation, time.perf_counter(), group))
            self._stats.generations_started += 1
        self.metrics.running.set(len(self._running))
        return header

    def _drop_cancelled(self) -> None:
        """Cancelled generations leave between steps; their tensors go with them (held frames are dropped)."""
        with self._lock:
            for running in [r for r in self._running if r.job.cancelled.is_set()]:
                self._running.remove(running)
                self._release(running.job, Outcome.CANCELLED)
        self.metrics.running.set(len(self._running))

    def _next_group(self) -> list[Running] | TrainingJob:
        """The generations (or the class's training) whose turn it is: the least work so far (`FairTurns`).

        A group's step is priced at its generations' mean step price: their UNet rows
        share one call, which on a GPU costs little more than one row alone.
        """
        groups: dict[Group, list[Running]] = {}
        for running in self._running:
            groups.setdefault(running.group, []).append(running)
        batches = {group: members[: self.max_batch_size] for group, members in groups.items()}
        prices = {group: sum(r.job.spec.step_work for r in batch) / len(batch) for group, batch in batches.items()}
        with self._lock:
            training = {(0, 0, f"teach:{c}"): job for c, job in self._training.items()}
        prices.update({group: job.price for group, job in training.items()})
        chosen = self._turns.next(prices)
        return training[chosen] if chosen in training else batches[chosen]

    def _step(self, batch: list[Running]) -> None:
        """One denoising step for every generation in `batch`, through one UNet call.

        On a GPU the step is only queued here. The previous step's frames are sent
        once this UNet call is queued behind their copies: waiting for those copies
        then leaves the GPU busy, and the Python of the next step (and the encoding
        of frames on the server's thread) overlaps the device's work instead of
        following it. Each frame thus reaches its reader one step later. On the CPU
        the UNet call is the work itself (or, simulated, a sleep), and every copy is
        done: the frames go once its inputs are made, just before it, so that they are
        encoded and sent while it runs, not while this thread makes the inputs or does
        the step's own work after it.
        """
        generations = [r.generation for r in batch]
        on_cpu = generations[0].model.device.type == "cpu"
        try:
            with torch.inference_mode():
                pairs, unet = predict_noise(generations[0].model, generations, self._send_frames if on_cpu else None)
                # Guidance, the scheduler's step, x0 and the copies, as tensor work for the batch at once.
                steps_together(generations, together(pairs))
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
        ended: list[Running] = []
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
        for _, event in unsent:
            event.copied()
            if event.unet is not self._last_unet:  # one UNet call, whatever the size of its batch
                self._last_unet = event.unet
                self.metrics.step_seconds.observe(event.unet_seconds)
        emit_all([(job, event) for job, event in unsent if not job.cancelled.is_set()])

    def _finish(self, ended: list[Running], failed: bool = False) -> None:
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
