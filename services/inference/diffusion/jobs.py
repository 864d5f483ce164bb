"""A generation in the queue: who asks (`Requester`), the job its events flow from, what the teacher sees."""

from __future__ import annotations

import asyncio
import enum
import threading
import time
from dataclasses import dataclass, field

from services.inference.diffusion.denoise import Generation
from services.inference.diffusion.events import Event
from services.inference.diffusion.spec import GenerationSpec
from services.inference.refusals import MODEL_FAILURE, QUEUE_CLEARED  # noqa: F401  (re-exported: sentences the student reads in their language)


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
        emit_all([(self, event)])

    def cancel(self) -> None:
        self.cancelled.set()


def emit_all(events: list[tuple[Job, Event]]) -> None:
    """Hand events to their jobs' loops: one wake-up of each loop for all of them, in order.

    A step of a class of 64 brings 64 frames. Waking the loop for each (a write to its
    self-pipe, the interpreter's lock given up and taken back around it) kept the
    worker's thread waiting between UNet calls; one call per loop delivers them all.
    """
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Job, Event]]] = {}
    for job, event in events:
        by_loop.setdefault(job.loop, []).append((job, event))
    for loop, delivered in by_loop.items():
        try:
            loop.call_soon_threadsafe(_deliver, delivered)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            for job, _ in delivered:
                job.cancelled.set()


def _deliver(events: list[tuple[Job, Event]]) -> None:
    for job, event in events:
        job.events.put_nowait(event)


@dataclass(eq=False)
class Running:
    job: Job
    generation: Generation
    started_at: float
    group: tuple[int, int, str]  # latent height and width, and the class model's digest (see batching.Group)

    @property
    def work_left(self) -> float:
        """The work of the steps it has still to run."""
        spec = self.job.spec
        return max(0, spec.steps - self.generation.step_index) * spec.step_work
