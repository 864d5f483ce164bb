"""The room for lesson 10: a class teaches its own copy of the model a new word.

Who may do what: a student of the class (checked by the API against the roster) hands
in drawings, at most PER_STUDENT each and PER_CLASS in all, and reads the class's state;
the teacher (the teacher code) lists and removes drawings, teaches, stops and resets.
A class's drawings, its training's progress and its taught word live in the class's
records (`together/shared.py`): signed, in Redis for every replica, gone with the class.

Teaching is one training job at a time per class, on the replica the teacher's call
reached, run by the worker that owns the model, taking turns with the generations
(`diffusion/training.py`). Its progress is written to the class's record as it goes,
so every student's page, on any replica, shows the same loss curve and sample sheet.
A taught word is stored (its few tensors, `teach.TaughtWord`) and the class's prompts
that use it are painted by the class's own model (`diffusion/taught.py`); every other
prompt by the model itself, so the lessons' stored pictures stay shared.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from services.common.api import pb
from services.common.i18n import N_, Sentence
from services.common.shapes_data import caption_of
from services.common.teaching import MIN_DRAWINGS, PER_CLASS, PER_STUDENT
from services.inference.diffusion.batching import BatchScheduler
from services.inference.diffusion.jobs import Requester
from services.inference.diffusion.models import DiffusionModel
from services.inference.diffusion.spec import GenerationSpec
from services.inference.diffusion.teach import (
    DEFAULT_STEPS,
    Drawing,
    TaughtWord,
    TeachConfig,
    TeachProgress,
    check_word,
    teach,
)
from services.inference.diffusion.training import Ended, TrainingJob
from services.inference.refusals import RequestError, sentences_of
from services.inference.settings import InferenceSettings
from services.inference.teaching import drawings as sheets
from services.inference.teaching.progress import WordState, samples_sheet
from services.inference.teaching.refusals import DrawingsFull, NotTeachable, TrainingNow
from services.inference.together.shared import Change, ClassRecords, Snapshot

log = logging.getLogger(__name__)

DRAWINGS, WORD, TAUGHT = "drawings", "word", "taught"  # the class's records (see shared.py)
MAX_STEPS = 600
# A training step's price, in steps of one standard picture: measured on Shapes at one torch thread, a step of
# 32 pictures with its share of sample sheets took 0.49 s, a guided step of one picture 0.025 s (about 20 times).
TRAINING_STEP_PRICE = 20.0
STALE_S = 90.0  # a training whose replica has not reported for this long has stopped with it
WRITE_EVERY_S = 0.5  # progress is written to the class's record at most this often
KNOWN_FOR_S = 2.0  # how long a replica trusts what it read of a class's taught word and drawings
CLASSES_KEPT = 512  # classes whose word and drawings a replica keeps read (then it forgets them all)
SHAPES_FAMILY = "shapes"


class Teaching:
    """The classes' drawings, their trainings and their taught words, for one model."""

    def __init__(
        self, model: DiffusionModel, scheduler: BatchScheduler, records: ClassRecords, settings: InferenceSettings
    ) -> None:
        self.model, self.scheduler, self.records = model, scheduler, records
        self.standard_step = scheduler.standard_work / settings.default_steps  # one step of a standard picture
        self.threads = settings.teach_threads
        self.teachable = model.card.family == SHAPES_FAMILY
        self._known: dict[str, tuple[float, WordState]] = {}  # class -> (read at, its word state)
        self._drawings: dict[str, tuple[float, list[sheets.ClassDrawing]]] = {}  # class -> (read at, its drawings)
        self._reports: set[asyncio.Task[None]] = set()

    def _check_teachable(self) -> None:
        if not self.teachable:
            raise NotTeachable()

    # -- students --------------------------------------------------------------------

    async def submit(self, who: Requester, png: bytes) -> tuple[str, int, int]:
        """Hand in a drawing: (its id, the student's drawings now, the class's)."""
        self._check_teachable()
        try:
            clean = sheets.read_png(png)
        except sheets.NotADrawing as error:
            raise RequestError([("png", error.sentence)]) from error
        if (await self.word_state(who.classroom)).training:
            raise TrainingNow()
        drawing = sheets.new_drawing(who.student, who.name, clean)

        def decide(snapshot: Snapshot) -> Change[tuple[str, int, int]]:
            kept = sheets.load_set(snapshot.value)
            mine = sum(d.student == who.student for d in kept)
            same = next((d for d in kept if d.student == who.student and d.png == clean), None)
            if same is not None:  # handed in again (a reload, a second tab): kept once
                return Change((same.drawing_id, mine, len(kept)))
            if mine >= PER_STUDENT:
                most = N_(
                    "You have handed in {count} drawings, the most one student may. "
                    "Your teacher can remove one if you want to draw again."
                )
                raise DrawingsFull(Sentence(most, count=mine))
            if len(kept) >= PER_CLASS:
                full = N_("The class has handed in {count} drawings, as many as the model takes.")
                raise DrawingsFull(Sentence(full, count=len(kept)))
            kept.append(drawing)
            return Change((drawing.drawing_id, mine + 1, len(kept)), sheets.dump_set(kept))

        result, _ = await self.records.change(who.classroom, DRAWINGS, decide, away="refuse", notify=False)
        self._drawings.pop(who.classroom, None)
        return result

    async def state(self, classroom: str, student: str = "") -> pb.TeachingState:
        """The class's teaching as a student's (or the teacher's) page shows it."""
        word = await self.word_state(classroom, fresh=True)
        kept = await self._drawn(classroom)
        message = word.to_proto(self.teachable)
        if not self.teachable:  # Shapes beside this model learned it (frontend CLASSROOM_SHAPES_ADDR): not this one
            message.taught_word = ""
        message.drawings = len(kept)
        message.yours = sum(d.student == student for d in kept) if student else 0
        return message

    async def word_state(self, classroom: str, fresh: bool = False) -> WordState:
        """The class's word record (a training whose replica stopped reporting reads as failed)."""
        known = self._known.get(classroom)
        if known is not None and not fresh and time.monotonic() - known[0] < KNOWN_FOR_S:
            return known[1]
        snapshot = await self.records.read(classroom, WORD)
        state = WordState.from_payload(snapshot.value).checked(time.time(), STALE_S)
        if len(self._known) > CLASSES_KEPT:
            self._known.clear()  # read again when asked
        self._known[classroom] = (time.monotonic(), state)
        return state

    # -- the teacher -----------------------------------------------------------------

    async def drawings(self, classroom: str) -> list[sheets.ClassDrawing]:
        kept = sheets.load_set((await self.records.read(classroom, DRAWINGS)).value)
        if len(self._drawings) > CLASSES_KEPT:
            self._drawings.clear()  # read again when asked
        self._drawings[classroom] = (time.monotonic(), kept)
        return kept

    async def _drawn(self, classroom: str) -> list[sheets.ClassDrawing]:
        """The class's drawings as a page's poll counts them: read again at most every KNOWN_FOR_S."""
        known = self._drawings.get(classroom)
        if known is not None and time.monotonic() - known[0] < KNOWN_FOR_S:
            return known[1]
        return await self.drawings(classroom)

    async def remove(self, classroom: str, drawing_id: str) -> bool:
        def decide(snapshot: Snapshot) -> Change[bool]:
            kept = sheets.load_set(snapshot.value)
            left = [d for d in kept if d.drawing_id != drawing_id]
            return Change(len(left) < len(kept), sheets.dump_set(left) if len(left) < len(kept) else None)

        removed, _ = await self.records.change(classroom, DRAWINGS, decide, away="refuse", notify=False)
        self._drawings.pop(classroom, None)
        return removed

    async def teach(self, classroom: str, word: str, steps: int) -> AsyncIterator[pb.TeachingState]:
        """Start the class's training (or follow the one running), and its state until it ends."""
        self._check_teachable()
        if not (await self.word_state(classroom, fresh=True)).training:
            await self._start(classroom, word, steps)
        last = None
        while True:
            message = await self.state(classroom)
            if message != last:
                yield message
                last = message
            if message.phase != pb.TEACHING_PHASE_TRAINING:
                return
            await asyncio.sleep(WRITE_EVERY_S)

    async def _start(self, classroom: str, word: str, steps: int) -> None:
        if self.scheduler.training(classroom) is not None:
            return  # it trains here already (its record read as stale while it was paused): follow it
        try:
            check_word(self.model, word)
        except ValueError as error:  # a `Sentence`: sent as its template, read in the teacher's language
            raise RequestError([("word", said) for said in sentences_of(error)]) from error
        word = word.strip().lower()
        steps = steps or DEFAULT_STEPS  # the recipe's own (teach.py)
        if not 1 <= steps <= MAX_STEPS:
            raise RequestError([("steps", Sentence(N_("Training may take 1 to {most} steps."), most=MAX_STEPS))])
        drawn = await self.drawings(classroom)
        if len(drawn) < MIN_DRAWINGS:
            too_few = N_(
                "The class has handed in {count} drawings; teaching needs at least {fewest}. "
                "Ask more students to draw the shape."
            )
            sentence = Sentence(too_few, count=len(drawn), fewest=MIN_DRAWINGS)
            raise RequestError([("drawings", sentence)])

        def decide(snapshot: Snapshot) -> Change[bool]:
            state = WordState.from_payload(snapshot.value).checked(time.time(), STALE_S)
            if state.training:
                return Change(False)  # started meanwhile (another replica): follow it
            started = dataclasses.replace(state, phase=pb.TEACHING_PHASE_TRAINING, word=word, step=0,
                                          total=steps, losses=[], new_word_losses=[],
                                          known_losses=[], samples_png=b"", samples_step=0,
                                          samples_prompts=[], message="", seconds=0.0, beat=time.time(),
                                          stop=False)  # fmt: skip
            return Change(True, started.payload())

        started, _ = await self.records.change(classroom, WORD, decide, away="refuse", notify=False)
        self._known.pop(classroom, None)
        if not started:
            return
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[Any] = asyncio.Queue()
        masks = [Drawing(d.mask()) for d in drawn]
        seed = int.from_bytes(classroom.encode()[:4].ljust(4, b"\0"), "big")

        def run(emit: Any, should_stop: Any) -> TaughtWord:
            return teach(self.model, masks, word, steps=steps, seed=seed, on_progress=emit, should_stop=should_stop)

        job = TrainingJob(
            classroom,
            TRAINING_STEP_PRICE * self.standard_step,
            run,
            lambda event: loop.call_soon_threadsafe(events.put_nowait, event),
            threads=self.threads,
        )
        if not self.scheduler.train(job):
            return
        task = asyncio.create_task(self._report(classroom, word, job, events, len(drawn)))
        self._reports.add(task)
        task.add_done_callback(self._reports.discard)
        log.info("a class started teaching its model a word (%d drawings, %d steps)", len(drawn), steps)

    async def _report(
        self, classroom: str, word: str, job: TrainingJob, events: asyncio.Queue[Any], drawn: int
    ) -> None:
        """Write the training's progress into the class's record, and its word when it is done.

        While no step comes (the teacher paused the class), the record's heartbeat is still written
        every STALE_S / 3, so no replica reads the training as stopped, and a stop is still heard.
        """
        started = time.monotonic()
        progress: dict[str, Any] = {"losses": [], "new_word_losses": [], "known_losses": [], "word": word}
        written = 0.0
        ended: Ended | None = None
        while ended is None:
            try:
                event = await asyncio.wait_for(events.get(), STALE_S / 3)
            except TimeoutError:
                event = None  # a heartbeat
            if isinstance(event, TeachProgress):
                progress.update(step=event.step, total=event.total)
                for name, value in (("losses", event.loss), ("new_word_losses", event.new_word_loss),
                                    ("known_losses", event.known_loss)):  # fmt: skip
                    progress[name] = [*progress[name], float(value)]
                if event.samples:
                    prompts = [caption_of(colour, word) for colour in TeachConfig().sample_colours]
                    progress.update(samples_png=samples_sheet(event.samples), samples_step=event.step,
                                    samples_prompts=prompts[: len(event.samples)])  # fmt: skip
                if time.monotonic() - written < WRITE_EVERY_S and not events.empty():
                    continue
            elif isinstance(event, Ended):
                ended = await self._end(classroom, event)
            written = time.monotonic()
            progress.update(seconds=written - started, beat=time.time())
            try:
                stop = await self._write(classroom, dict(progress), ended, drawn)
            except Exception:
                log.exception("could not write a class's training progress")
                stop = False
            if stop and ended is None:
                self.scheduler.stop_training(classroom)  # the teacher stopped it through another replica

    async def _end(self, classroom: str, ended: Ended) -> Ended:
        """The training's end as the class gets it: its word kept, unless the teacher stopped or forgot it meanwhile."""
        if ended.taught is None or ended.stopped:
            return ended
        state = WordState.from_payload((await self.records.read(classroom, WORD)).value)
        if not state.training or state.stop:
            return Ended(None, stopped=True)  # stopped or forgotten through another replica as it ended
        try:
            await self._keep_word(classroom, ended.taught)
        except Exception:
            log.exception("could not keep a class's taught word")
            return Ended(None, failed=True)
        return ended

    async def _write(self, classroom: str, progress: dict[str, Any], ended: Ended | None, drawn: int) -> bool:
        """Write progress (and the end) into the class's word record; whether the teacher asked it to stop."""

        def decide(snapshot: Snapshot) -> Change[bool]:
            state = WordState.from_payload(snapshot.value)
            changed = dataclasses.replace(state, **progress)
            if ended is not None:
                changed = changed.ended(ended, drawn)
            return Change(state.stop, changed.payload())

        stop, _ = await self.records.change(classroom, WORD, decide, away="local", notify=False)
        self._known.pop(classroom, None)
        return stop

    async def _keep_word(self, classroom: str, taught: TaughtWord) -> None:
        """Store the class's new word (every replica builds its model from it) and build it here."""
        data = taught.to_bytes()
        await self.records.change(classroom, TAUGHT, lambda _: Change(True, data), away="local", notify=False)
        await asyncio.to_thread(self.scheduler.taught.add, taught)

    async def stop(self, classroom: str) -> bool:
        """Stop the class's training (here, or on the replica that runs it, at its next report)."""
        if self.scheduler.stop_training(classroom):
            return True

        def decide(snapshot: Snapshot) -> Change[bool]:
            state = WordState.from_payload(snapshot.value)
            if not state.training:
                return Change(False)
            return Change(True, dataclasses.replace(state, stop=True).payload())

        stopped, _ = await self.records.change(classroom, WORD, decide, away="refuse", notify=False)
        return stopped

    async def reset(self, classroom: str, drawings_too: bool) -> bool:
        """Forget the class's word (stopping any training), and its drawings when asked."""
        await self.stop(classroom)

        def decide(snapshot: Snapshot) -> Change[bool]:
            state = WordState.from_payload(snapshot.value)
            if state.checked(time.time(), STALE_S).training:  # it ends as stopped, knowing no word
                forgot = dataclasses.replace(state, stop=True, taught_word="", taught_digest="", token_ids=[])
                return Change(True, forgot.payload())
            changed = bool(state.taught_word or state.word)
            return Change(changed, WordState().payload() if changed else None)

        changed, _ = await self.records.change(classroom, WORD, decide, away="refuse", notify=False)
        await self.records.change(classroom, TAUGHT, lambda s: Change(True, b"" if s.value else None), away="refuse")
        if drawings_too:
            gone, _ = await self.records.change(
                classroom, DRAWINGS, lambda s: Change(bool(s.value), b"[]" if s.value else None), away="refuse"
            )
            changed = changed or gone
        self._known.pop(classroom, None)
        self._drawings.pop(classroom, None)
        return changed

    # -- generation --------------------------------------------------------------------

    async def route(self, spec: GenerationSpec, who: Requester) -> GenerationSpec:
        """The spec painted by the class's own model when its prompts use the class's word; else as it is."""
        texts = [spec.prompt, spec.negative_prompt]
        if spec.branch is not None:
            texts += [spec.branch.prompt, spec.branch.negative_prompt]
        taught = await self._taught_for(who, texts)
        return dataclasses.replace(spec, taught=taught) if taught else spec

    async def text_model(self, who: Requester, prompt: str) -> DiffusionModel:
        """The model that reads this prompt for this class (its own, when the prompt uses its word)."""
        taught = await self._taught_for(who, [prompt])
        return (self.scheduler.taught.model_for(taught) if taught else None) or self.model

    async def _taught_for(self, who: Requester, texts: list[str]) -> str:
        """The digest of the class's word if these texts use it (its model built here), else ""."""
        if not self.teachable:  # (a server's one unnamed class, "", teaches and paints its word like any)
            return ""
        state = await self.word_state(who.classroom)
        if not state.taught_digest or not set(state.token_ids) & self._piece_ids(texts):
            return ""
        if not self.scheduler.taught.has(state.taught_digest):
            stored = (await self.records.read(who.classroom, TAUGHT)).value
            taught = TaughtWord.from_bytes(stored) if stored else None
            if taught is None or taught.digest() != state.taught_digest:
                return ""  # its word is being replaced: the model itself reads it meanwhile
            await asyncio.to_thread(self.scheduler.taught.add, taught)
        return state.taught_digest

    def _piece_ids(self, texts: list[str]) -> set[int]:
        return {i for ids in self.model.piece_ids(texts) for i in ids}

    async def close(self) -> None:
        for task in list(self._reports):
            task.cancel()
