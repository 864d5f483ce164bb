"""The classroom: everything the inference service decides, owned by one object.

Built once the model is loaded, it owns the model, the batching scheduler, the
trajectory hub, the store, the rate limiter, the blocklist, the lesson catalog
and the log of blocked prompts. Who may start a generation is decided in one
place, `open` (with `_admit_work` for the part that only matters when the
model must run); every refusal is a typed `Refusal` from `refusals.py`. The
gRPC adapters (`api/`) only translate; resume tickets and the lesson render are in
`tickets.py` and `lessons.py`, what the classroom reports about itself in `reports.py`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import math
import time
import weakref
from collections import Counter, deque
from concurrent.futures import Executor

from services.common.api import pb
from services.common.include_mask import ON_REQUEST_PROBES
from services.common.text import fold_name, hidden_characters
from services.common.trajectories import canonical_request
from services.inference.classroom.crowd import CrowdHold
from services.inference.classroom.lessons import CatalogEntry, LessonRender, PrecomputeProgress
from services.inference.classroom.ratelimit import RateLimiter
from services.inference.classroom.reports import Blocked, LessonListing, ServerStats, device_memory, model_info
from services.inference.classroom.roster import RosterEntry, SharedRoster
from services.inference.classroom.sentences import BAD_BROWSER, BAD_SESSION, NO_NAME, STUDENT_REMOVED
from services.inference.classroom.tickets import ResumeTickets
from services.inference.classroom.turns import StudentTurns
from services.inference.classroom.validation import (
    INTERNAL_PREFIX,
    Limits,
    check_generate,
    check_prompt,
    check_requester,
)
from services.inference.diffusion.batching import BatchScheduler
from services.inference.diffusion.jobs import Job, JobView, Requester
from services.inference.diffusion.models import DiffusionModel, PromptEmbedding, PromptTokens
from services.inference.diffusion.probes import default_probes
from services.inference.diffusion.spec import GenerationSpec, standard_work
from services.inference.learned.learned import Learned
from services.inference.metrics import Metrics
from services.inference.moderation import Blocklist
from services.inference.refusals import BlockedPrompt, Refusal, RequestError
from services.inference.settings import InferenceSettings
from services.inference.teaching.teaching import Teaching
from services.inference.together.shared import ClassRecords
from services.inference.together.together import Together
from services.inference.trajectories.cache import TrajectoryStore
from services.inference.trajectories.hub import TrajectoryHub
from services.inference.trajectories.log import Trajectory
from services.lessons.catalog import Catalog, all_entries, load_catalog

log = logging.getLogger(__name__)

# Precompute generates as a student of its own (one lesson at a time, like any student).
PRECOMPUTE = Requester(f"{INTERNAL_PREFIX}precompute", name="lesson precompute")
# A lesson's own grid at a seed the catalog does not hold (lesson 6's new seed) is computed as the
# class's work, one picture at a time per student, outside their rate limit; its own bucket holds
# this many grids (of the catalog's largest collection) and refills one grid a minute.
GRID_PREFIX = f"{INTERNAL_PREFIX}grid:"
GRIDS_AT_ONCE = 2


class Classroom:
    def __init__(
        self,
        settings: InferenceSettings,
        model: DiffusionModel,
        store: TrajectoryStore,
        metrics: Metrics,
        encoder: Executor,
    ) -> None:
        self.settings, self.model, self.store, self.metrics = settings, model, store, metrics
        self.limits = Limits.for_model(
            settings, model.default_size, model.card.max_steps, model.card.schedulers_left_out
        )
        self.default_include = default_probes(model.preview_decoder.draws_pictures)  # what an empty mask gets
        self.scheduler = BatchScheduler(
            model,
            max_batch_size=settings.max_batch_size or (8 if model.device.type == "cuda" else 4),
            max_queue=settings.max_queue,
            metrics=metrics,
            max_queue_per_class=settings.max_queue_per_class,
            max_per_address=settings.max_per_address,
            max_queue_work=settings.max_queue_work,
            standard_work=standard_work(settings, model.default_size, self.default_include),
        )
        self.limiter = RateLimiter(store, settings.rate_limit_per_minute, settings.rate_limit_burst)
        self.text_limiter = RateLimiter(
            store, settings.text_rate_limit_per_minute, settings.text_rate_limit_burst, bucket="text", fail_closed=False
        )
        self.hub = TrajectoryHub(
            model,
            self.scheduler,
            store,
            encoder,
            memory_bytes=settings.memory_cache_mb * 2**20,
            metrics=metrics,
            admit=self._admit_work,
            single_flight=settings.single_flight,
            shared_flight=settings.shared_flight,
            lease_s=settings.flight_lease_s,
        )
        self.blocklist = Blocklist.from_file(settings.blocklist)
        self.blocked: deque[Blocked] = deque(maxlen=50)  # the latest blocked attempts, newest first
        self.blocked_prompts = 0
        self.tickets = ResumeTickets(store)
        # Replays hold their bulk while 16 Generate calls arrive within 0.1 s (at most 0.25 s a message).
        self.crowd = CrowdHold(size=16, window_s=0.1, wait_s=0.25)
        self.catalog: Catalog = load_catalog(settings.catalog).for_model(model.card.family)
        self.entries = self._check_catalog()
        self._lesson_keys = {e.entry.id: e.key for e in self.entries}
        # Each entry's key at seed 0: a request with the same key at seed 0 is that entry at another seed.
        self._grid_keys = {e.entry.id: self._key_at_seed_0(e.spec) for e in self.entries}
        largest = max(Counter(e.entry.collection for e in self.entries).values(), default=1)
        self.grid_limiter = RateLimiter(
            store, largest if self.limiter.enabled else 0, GRIDS_AT_ONCE * largest, bucket="lesson-grid"
        )
        self.lesson_render = LessonRender(self.entries, store, self.hub, PRECOMPUTE)
        # The class's shared state, in Redis for every replica: the roster here, present mode,
        # quick checks, the class gallery and map in Together (teaching together).
        records = ClassRecords(store)
        self.roster = SharedRoster(records, max_per_address=settings.max_per_address, blocklist=self.blocklist)
        self.roster.when_removed(self._stop_removed)  # a name removed through any replica stops its pictures here
        self.turns = StudentTurns(store)  # one picture at a time per student, on every replica
        self._turn_of: weakref.WeakKeyDictionary[Job, str] = weakref.WeakKeyDictionary()  # jobs under a turn
        self.together = Together(
            store, self.catalog, [(e.entry, e.request) for e in self.entries], self.blocklist, records
        )
        self.teaching = Teaching(model, self.scheduler, records, settings)  # lesson 10: a class's own word

    def _check_catalog(self) -> list[CatalogEntry]:
        entries = []
        for entry in all_entries(self.catalog, self.default_include & ON_REQUEST_PROBES):
            try:
                spec = check_generate(
                    entry.request,
                    self.settings,
                    self.model.default_size,
                    limits=self.limits,
                    default_include=self.default_include,
                )
            except RequestError as error:
                log.warning("lesson entry %s is outside this server's limits and is left out: %s", entry.id, error)
                continue
            entries.append(CatalogEntry(entry, spec, canonical_request(spec.to_proto()), self.hub.key(spec)))
        return entries

    # -- admission: the whole policy, in the order it applies ---------------

    async def open(
        self, request: pb.GenerateRequest, who: Requester, lesson: str = "", resume: bytes = b""
    ) -> tuple[Trajectory, int, GenerationSpec]:
        """Admit a Generate request: the trajectory to read, where it comes from, and the checked request.

        1. Who asks may not be the server itself, their name is plain text, and the teacher
           has not removed it from the class.
        2. The request must be within the server's limits and pass the class's blocklist.
        3. A lesson tag counts only on its catalog entry's own request (then the work is the
           lesson's, not the student's); a resume ticket only on the request and student it was
           given for, and once (then the model's work is not charged again).
        4. A trajectory already running, remembered or cached is served as it is.
        5. Otherwise the model must run: see `_admit_work`.
        Only a request let in counts toward the crowd hold.
        Raises a `Refusal`; the caller must `release` the trajectory it gets.
        """
        who = check_requester(who)
        await self.roster.check(who.classroom, who.name)
        try:
            spec = check_generate(
                request, self.settings, self.model.default_size, self.blocklist, self.limits, self.default_include
            )
        except BlockedPrompt:
            self.blocked_prompts += 1
            self.metrics.rejected.labels("blocked").inc()
            log.info("blocked a prompt")  # the prompt itself stays out of the logs
            # Kept in memory only, for the teacher's page (which shows the prompt only when opened).
            self.blocked.appendleft(Blocked(who.name, time.time(), request.prompt))
            raise
        spec = await self.teaching.route(spec, who)  # a prompt with the class's own word: its own model
        key = self.hub.key(spec)
        grid = False
        if lesson and self._lesson_keys.get(lesson) != key:
            # The entry's own request at another seed is a picture of the lesson's grid; anything else
            # claiming the entry (another prompt, other settings) is the student's own request.
            grid = self._grid_keys.get(lesson) == self._key_at_seed_0(spec)
            lesson = ""
        free = bool(resume) and await self.tickets.use(resume, who, key)
        asker = who  # the ticket's student (a lesson or grid picture runs under another name below)
        if lesson:
            # A lesson example is the class's, not the student's: computing it takes neither the
            # student's one place nor their computer's (the catalog bounds how many there can be),
            # so a student whose own picture is still coming can open the next lesson.
            who = Requester(f"{INTERNAL_PREFIX}lesson:{lesson}", name="a lesson example", classroom=who.classroom)
        elif grid:
            # The class's work too, but asked by this student: one place of its own (so their own
            # picture may run beside it), charged to the student's grid bucket instead of their rate limit.
            who = Requester(f"{GRID_PREFIX}{who.student}", name=who.name, classroom=who.classroom)
        try:
            trajectory, source = await self.hub.open(spec, who, key, lesson_entry=lesson, free=free)
        except Refusal:
            if free:  # refused (busy, queue full): the ticket bought nothing, so it still works
                await self.tickets.give_back(asker, key)
            raise
        if trajectory.job is not None and (student := self._turn_of.pop(trajectory.job, None)) is not None:
            self.turns.hold_for(student, trajectory)
        # Only calls that were let in count toward a crowd: a flood of refused ones (invalid, blocked,
        # rate-limited, busy) must not hold back the class's cached replays.
        self.crowd.arrived()
        return trajectory, source, spec

    def _key_at_seed_0(self, spec: GenerationSpec) -> str:
        return self.hub.key(dataclasses.replace(spec, seed=0))

    def resume_ticket(self, who: Requester, key: str) -> bytes:
        """What lets this student ask for this trajectory again, after a lost stream, without being charged."""
        return self.tickets.give(who, key)

    async def _admit_work(self, spec: GenerationSpec, who: Requester, lesson: bool) -> Job:
        """5. Put the model to work, if the rules for model work allow it.

        The scheduler's rules (one generation per student, at most a few per browser
        address, the queue's length, each class's share), then the student's rate limit
        (lesson examples and resumed requests, `lesson`, are exempt).
        A paused class is still admitted; its generations wait until the teacher resumes.
        """
        # A refusal costs nothing: the scheduler is asked first, and a token taken for a
        # request it then refuses (the queue filled meanwhile) is given back.
        self.scheduler.check(who, spec)
        if lesson:
            return self.scheduler.submit(spec, who)
        limiter = self.grid_limiter if who.student.startswith(GRID_PREFIX) else self.limiter
        price = math.ceil(spec.work / self.scheduler.standard_work - 1e-9)  # in standard pictures
        turn = await self.turns.take(who.student)  # this replica's queue holds one; this holds it on all
        try:
            await limiter.take(who.student, price)
        except Refusal:
            if turn:
                await self.turns.give_back(who.student)
            raise
        try:
            job = self.scheduler.submit(spec, who)
        except Refusal:
            await limiter.give_back(who.student, price)
            if turn:
                await self.turns.give_back(who.student)
            raise
        if turn:
            self._turn_of[job] = who.student
        return job

    async def picture_ended(self, trajectory: Trajectory) -> None:
        """Called once per stream when its picture is made (or it ended), before the stream's next message."""
        await self.turns.picture_ended(trajectory)

    def release(self, trajectory: Trajectory) -> None:
        self.hub.release(trajectory)

    def sent(self, frame_count: int) -> None:
        """A stream sent a message of `frame_count` frames."""
        self.metrics.frames_sent.inc(frame_count)

    async def hold_replay(self) -> None:
        """Before a replay's next message: wait while a crowd of calls arrives (see `crowd.py`)."""
        await self.crowd.hold()

    # -- the text side -------------------------------------------------------

    async def tokenize(self, prompt: str, who: Requester) -> PromptTokens:
        check_prompt(prompt, self.settings, required=False)
        await self.text_limiter.take(check_requester(who).student)
        return await asyncio.to_thread((await self.teaching.text_model(who, prompt)).tokenize, prompt)

    async def encode(self, prompt: str, who: Requester) -> PromptEmbedding:
        check_prompt(prompt, self.settings, required=False)
        await self.text_limiter.take(check_requester(who).student)
        return await asyncio.to_thread((await self.teaching.text_model(who, prompt)).encode, prompt)

    # -- lessons and figures ---------------------------------------------------

    def model_info(self) -> pb.GetModelInfoResponse:
        return model_info(self.model, self.settings, self.limits, self.default_include)

    async def lessons(self, collection: str = "") -> LessonListing:
        """The catalog's collections and entries (of one collection, or all), the entries with their cache states."""
        chosen = [e for e in self.entries if collection in ("", e.entry.collection)]
        states = await self.store.states([e.key for e in chosen])
        collections = [c for c in self.catalog.collections if collection in ("", c.id)]
        entries = list(zip(chosen, states, strict=True))
        return LessonListing(self.catalog.version, collections, entries, self.store.available)

    def stats(self) -> ServerStats:
        return ServerStats(
            scheduler=self.scheduler.stats(),
            hub=dataclasses.replace(self.hub.stats),
            cache=dataclasses.replace(self.store.stats),
            cache_available=self.store.available,
            cache_status=self.store.status,
            blocked_prompts=self.blocked_prompts,
        )

    # -- who is in class -------------------------------------------------------

    async def join(self, who: Requester, session: str, browser: str = "") -> float:
        """A front-end session signs in with a name, or renews it; seconds within which to renew."""
        who = check_requester(who)
        if not who.name:
            raise RequestError([("name", NO_NAME)])
        if not session or len(session) > 128 or hidden_characters(session):
            raise RequestError([("session", BAD_SESSION)])
        if len(browser) > 128 or hidden_characters(browser):
            raise RequestError([("browser", BAD_BROWSER)])
        await self.roster.join(who.classroom, who.name, session, who.address, browser)
        return self.roster.live_s / 3

    async def in_class(self, who: Requester) -> Requester:
        """A student who shares or answers: as the front end asserts, checked, and not removed by the teacher."""
        who = check_requester(who)
        await self.roster.check(who.classroom, who.name)
        return who

    # -- the teacher's controls ----------------------------------------------

    async def students(self) -> list[RosterEntry]:
        return await self.roster.entries()

    async def remove_student(self, classroom: str, name: str, let_back: bool = False) -> tuple[bool, int]:
        """Remove a name from its class (its generations stop), or let it back: (changed, generations stopped)."""
        if let_back:
            return await self.roster.let_back(classroom, name), 0
        changed = await self.roster.remove(classroom, name)
        stopped = self._stop_removed(classroom, {fold_name(name)})
        log.info("the teacher removed a name from the class (%d generation(s) stopped here)", stopped)
        return changed, stopped

    def _stop_removed(self, classroom: str, folded: set[str]) -> int:
        return self.hub.stop_jobs_of(  # (the sentence is the removed student's alone: see the hub)
            lambda r: r.classroom == classroom and fold_name(r.name) in folded, STUDENT_REMOVED
        )

    def jobs(self) -> list[JobView]:
        return self.scheduler.jobs()

    def pause(self, paused: bool) -> bool:
        self.scheduler.pause(paused)
        log.info("the teacher %s generation", "paused" if paused else "resumed")
        return self.scheduler.paused

    def clear_queue(self) -> int:
        cleared = self.scheduler.clear_queue()
        log.info("the teacher cleared the queue: %d generation(s)", cleared)
        return cleared

    def batching(self) -> tuple[bool, int, float]:
        """(paused, the most requests one UNet call takes, the average it took), for the teacher's page."""
        return self.scheduler.paused, self.scheduler.max_batch_size, self.scheduler.average_batch

    def device(self) -> tuple[str, int, int]:
        """The device the model runs on, and (used, total) bytes of GPU memory; (0, 0) on a CPU."""
        return device_memory(self.model)

    @property
    def precompute(self) -> PrecomputeProgress:
        return self.lesson_render.progress

    def start_precompute(self) -> PrecomputeProgress:
        """Render, in the background, each catalog entry not yet kept as a lesson (once at a time)."""
        return self.lesson_render.start()

    async def cancel_precompute(self) -> None:
        await self.lesson_render.cancel()

    @functools.cached_property
    def learned(self) -> Learned:
        """Lesson 9's room for this model: its training pictures and the search for copies (built on first use)."""
        return Learned(self.model, self.store)

    def stop_watching(self) -> None:
        """Before the server stops: end the class's watch streams, which would never end by themselves."""
        self.together.stop_watching()

    async def close(self) -> None:
        """After the server stopped: stop the background work (the store is the server's to close)."""
        await self.cancel_precompute()
        await self.teaching.close()
        self.crowd.close()
        await self.turns.close()  # given back: a drained replica's students may start pictures elsewhere at once
        await self.hub.close()
        self.scheduler.close(timeout=5)
