"""Teaching together: present mode, quick checks, the class gallery and the class map, for each class.

What the teacher shows (the lesson example and step), the open quick check and
its answers live in Redis (`shared.py`, one record per class), so every replica
of the service serves one class and a restart loses none of it; each change, made
on any replica, wakes whoever watches the class there (`WatchClass`). The
gallery lives in Redis too (`gallery.py`); the class map is
drawn from it (`classmap.py`). Who may do what: teacher actions need the
teacher code (the adapters check it), a removed name may not share or answer
(the Classroom checks it), and what the teacher may do to a shared picture
(approve or hide it, nothing else) is decided here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from services.common.api import pb
from services.common.i18n import LANGUAGES, N_, SOURCE_LANGUAGE, Sentence, known_language
from services.inference.moderation import Blocklist
from services.inference.refusals import AlreadyAnswered, GalleryUnavailable, NoQuickCheck, NotShareable, RequestError
from services.inference.together.classmap import project
from services.inference.together.gallery import APPROVED, HIDDEN, PENDING, Gallery, path_of, submission_from
from services.inference.together.quickcheck import QuickCheck, teachers_own
from services.inference.together.shared import Change, ClassRecords, Snapshot, class_digest
from services.inference.trajectories.cache import TrajectoryStore
from services.lessons.catalog import Catalog, Entry

log = logging.getLogger(__name__)

LIVE = "live"  # the record of present mode and the open quick check (see shared.py)
FLAGGED = Sentence(N_("This picture was flagged by the safety filter, so it can't be shared."))
BLOCKED = Sentence(N_("This picture's prompt can't be used in class, so it can't be shared."))


@dataclass(frozen=True)
class LessonQuestion:
    """A catalog question with its picture answers found among the lesson's entries."""

    id: str  # "<collection>/<question>"
    collection: str
    question: str
    choices: tuple[pb.QuickCheckChoice, ...]
    answer: int


def lesson_questions(catalog: Catalog, entries: list[tuple[Entry, pb.GenerateRequest]]) -> dict[str, LessonQuestion]:
    """Every catalog question whose picture answers name exactly one entry of its collection each."""
    found: dict[str, LessonQuestion] = {}
    for collection in catalog.collections:
        own = [(entry, request) for entry, request in entries if entry.collection == collection.id]
        for question in collection.questions:
            choices = []
            for choice in question.choices:
                if not choice.labels:
                    choices.append(pb.QuickCheckChoice(text=choice.text))
                    continue
                matches = [(e, r) for e, r in own if choice.labels.items() <= e.labels.items()]
                if len(matches) != 1:
                    break
                entry, request = matches[0]
                choices.append(pb.QuickCheckChoice(text=choice.text, entry_id=entry.id, request=request))
            else:
                qid = f"{collection.id}/{question.id}"
                found[qid] = LessonQuestion(qid, collection.id, question.question, tuple(choices), question.answer)
                continue
            log.warning("quick check %s/%s names a picture the catalog does not have once; left out",
                        collection.id, question.id)  # fmt: skip
    return found


@dataclass
class ClassLive:
    """A class watched on this replica: the event its watchers wait on, and the read they share."""

    changed: asyncio.Event = field(default_factory=asyncio.Event)
    reading: asyncio.Task[pb.ClassState] | None = None  # one read of the class's state for all its watchers
    watchers: int = 0

    def wake(self) -> None:
        self.reading = None  # a read begun before the change may miss it: the next watcher reads again
        self.changed.set()
        self.changed = asyncio.Event()


def _stored(snapshot: Snapshot) -> pb.ClassState:
    """The class's present state and open quick check (with its answer) as kept; empty when none."""
    state = pb.ClassState()
    if snapshot.value is not None:
        try:
            state.ParseFromString(snapshot.value)
        except Exception:  # signed by this service, so only a format from another version lands here
            log.warning("class state: a record this version cannot read was ignored")
            state = pb.ClassState()
    return state


def _check(stored: pb.ClassState, marks: dict[str, bytes]) -> QuickCheck | None:
    """The open quick check with the answers counted so far (marks of another question are not its)."""
    if not stored.HasField("quick_check"):
        return None
    kept = stored.quick_check
    prefix = f"{kept.id}:".encode()
    answers = {student: int(mark[len(prefix) :]) for student, mark in marks.items() if mark.startswith(prefix)}
    return QuickCheck(kept.question, list(kept.choices), kept.answer, kept.id, kept.revealed, answers)


class Together:
    """Present mode, quick checks, the gallery and the class map, for every class, shared by every replica."""

    def __init__(
        self,
        store: TrajectoryStore,
        catalog: Catalog,
        entries: list[tuple[Entry, pb.GenerateRequest]],
        blocklist: Blocklist,
        records: ClassRecords | None = None,
    ) -> None:
        self.store, self.blocklist = store, blocklist
        self._gallery = Gallery(store)
        self._collections = {c.id: c for c in catalog.collections}
        self._entries = {entry.id: (entry, request) for entry, request in entries}
        self.questions = lesson_questions(catalog, entries)
        # Present mode and the quick check, in Redis (`shared.py`); each change wakes the watchers here.
        self.records = records or ClassRecords(store)
        self.records.listen(self._changed)
        self._watched: dict[str, ClassLive] = {}  # by class digest: the classes someone watches on this replica
        self.closing = False  # the service is stopping: watchers' streams end

    def _changed(self, digest: str, part: str) -> None:
        """A class's state changed (on any replica); ("", ""): anything may have changed."""
        if part not in (LIVE, ""):
            return
        for key in list(self._watched) if not digest else [digest]:
            if (live := self._watched.get(key)) is not None:
                live.wake()

    # -- what the students' pages follow ---------------------------------------

    async def state(self, classroom: str, for_teacher: bool = False) -> pb.ClassState:
        snapshot = await self.records.read(classroom, LIVE, marks=True)
        stored = _stored(snapshot)
        state = pb.ClassState(version=max(1, snapshot.version), present=stored.present, language=stored.language)
        check = _check(stored, snapshot.marks)
        if check is not None:
            state.quick_check.CopyFrom(check.message(for_teacher))
        return state

    async def watch(self, classroom: str) -> AsyncIterator[pb.ClassState]:
        """The class's state now, then again after every change made on any replica, until the reader stops.

        Changes arrive as notices within milliseconds; a lost notice is found by a recheck every few seconds.
        """
        self.records.start()
        digest = class_digest(classroom)
        live = self._watched.setdefault(digest, ClassLive())
        live.watchers += 1
        try:
            shown = -1
            while not self.closing:
                changed = live.changed  # taken before the state is read: no change slips between
                if live.reading is None:
                    live.reading = asyncio.ensure_future(self.state(classroom))
                state = await asyncio.shield(live.reading)
                if state.version != shown:
                    shown = state.version
                    yield state
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), self.records.recheck_s)
                if not changed.is_set():
                    live.reading = None  # the recheck: read again
        finally:
            live.watchers -= 1
            if live.watchers == 0 and self._watched.get(digest) is live:
                del self._watched[digest]

    def stop_watching(self) -> None:
        """End every watcher's stream now (the service is stopping): their front ends watch the next one."""
        self.closing = True
        self.records.stop()
        for live in self._watched.values():
            live.wake()

    # -- present mode ------------------------------------------------------------

    async def present(
        self, classroom: str, leading: bool, example_id: str, step: int, show_map: bool, lesson: str = ""
    ) -> pb.ClassState:
        """The teacher leads the class to a lesson example and step, or releases it (`lesson`: the menu's page)."""
        shown = pb.PresentState()
        if leading:
            found = self._entries.get(example_id)
            if found is None:
                raise RequestError([("example_id", Sentence(N_("Choose one of this server's lesson examples.")))])
            entry, request = found
            collection = self._collections[entry.collection]
            steps = request.num_inference_steps
            shown = pb.PresentState(
                leading=True, lesson=lesson[:64] or collection.lesson, collection=collection.id,
                collection_title=collection.title, example_id=entry.id, example=request,
                step=max(0, min(step, steps + 1 if steps else step)), show_map=show_map,
            )  # fmt: skip

        def decide(snapshot: Snapshot) -> Change[None]:
            stored = _stored(snapshot)
            if leading:  # one lead keeps its id while the teacher moves through it
                shown.lead_id = stored.present.lead_id if stored.present.leading else secrets.token_hex(8)
            stored.present.CopyFrom(shown)
            return Change(None, value=stored.SerializeToString())

        await self.records.change(classroom, LIVE, decide, away="refuse")
        return await self.state(classroom, for_teacher=True)

    # -- the class's language -----------------------------------------------------------

    async def set_language(self, classroom: str, language: str) -> pb.ClassState:
        """The teacher sets the language every student's page speaks unless the student picked another."""
        if not known_language(language):
            spoken = N_("Choose one of the languages this classroom speaks: {codes}.")
            raise RequestError([("language", Sentence(spoken, codes=", ".join(LANGUAGES)))])

        def decide(snapshot: Snapshot) -> Change[None]:
            stored = _stored(snapshot)
            stored.language = "" if language == SOURCE_LANGUAGE else language
            return Change(None, value=stored.SerializeToString())

        await self.records.change(classroom, LIVE, decide, away="refuse")
        return await self.state(classroom, for_teacher=True)

    # -- quick checks ---------------------------------------------------------------

    async def ask(
        self, classroom: str, lesson_question_id: str, question: str, choices: list[str], answer: int
    ) -> QuickCheck:
        if lesson_question_id:
            known = self.questions.get(lesson_question_id)
            if known is None:
                raise RequestError([("lesson_question_id", Sentence(N_("That lesson has no such question.")))])
            check = QuickCheck(known.question, list(known.choices), known.answer)
        else:
            check = teachers_own(question, choices, answer)

        def decide(snapshot: Snapshot) -> Change[None]:
            stored = _stored(snapshot)
            stored.quick_check.CopyFrom(check.message(for_teacher=True))
            return Change(None, value=stored.SerializeToString(), clear_marks=True)  # a new question: no answers

        await self.records.change(classroom, LIVE, decide, away="refuse")
        return check

    async def answer(self, classroom: str, student: str, question_id: str, choice: int) -> int:
        def decide(snapshot: Snapshot) -> Change[int]:
            check = _check(_stored(snapshot), snapshot.marks)
            if check is None:
                raise NoQuickCheck()
            counted = check.answer_from(student, question_id, choice)  # the rules: open, in range, once
            return Change(counted, mark=(student, f"{check.id}:{counted}".encode()))

        # The tally changes: every replica's watchers (the teacher's page, the answered count) follow.
        counted, marked = await self.records.change(classroom, LIVE, decide, away="refuse")
        if not marked:  # the same student answered through another replica a moment before
            raise AlreadyAnswered()
        return counted

    async def reveal(self, classroom: str) -> QuickCheck | None:
        def decide(snapshot: Snapshot) -> Change[QuickCheck | None]:
            stored = _stored(snapshot)
            check = _check(stored, snapshot.marks)
            if check is None:
                return Change(None)
            check.revealed = stored.quick_check.revealed = True
            return Change(check, value=stored.SerializeToString())

        check, _ = await self.records.change(classroom, LIVE, decide, away="refuse")
        return check

    async def close_check(self, classroom: str) -> None:
        def decide(snapshot: Snapshot) -> Change[None]:
            stored = _stored(snapshot)
            stored.ClearField("quick_check")
            return Change(None, value=stored.SerializeToString(), clear_marks=True)

        await self.records.change(classroom, LIVE, decide, away="refuse")

    # -- the gallery -----------------------------------------------------------------

    async def share(self, classroom: str, student: str, name: str, key: str) -> pb.GalleryItem:
        """Share the stored trajectory `key`: only what this service computed, kept, unflagged and allowed."""
        if not key or len(key) > 64 or not key.isalnum():
            raise NotShareable()
        found = await self.store.load(key)  # checked: signed with this server's secret, whole, its own key
        if found is None:  # not kept, or Redis (where the gallery lives too) cannot be reached
            raise NotShareable() if self.store.available else GalleryUnavailable()
        record, _ = found
        if record.events[-1].final.safety_flagged:
            raise NotShareable(FLAGGED)
        if any(self.blocklist.blocks(text) for text in _texts(record.events[0].header.request)):
            raise NotShareable(BLOCKED)
        item = await self._gallery.share(classroom, submission_from(record, key, student, name))
        log.info("a picture was shared to a class gallery (%s)", pb.SubmissionStatus.Name(item.status))
        return item

    async def submissions(self, classroom: str) -> tuple[list[pb.GalleryItem], bool]:
        """The gallery as the teacher sees it: every submission, newest first, and whether approval is required."""
        items = [s.item for s in await self._gallery.submissions(classroom)]
        return items, await self._gallery.approval_required(classroom)

    async def review(self, classroom: str, item_id: str, status: int) -> pb.GalleryItem:
        """The teacher approves or hides one shared picture: those are the two choices (pending is the student's)."""
        if status not in (APPROVED, HIDDEN):
            raise RequestError([("status", Sentence(N_("Approve or hide: those are the two choices.")))])
        return await self._gallery.review(classroom, item_id, status)

    async def set_approval(self, classroom: str, required: bool) -> bool:
        """Whether a shared picture waits for the teacher before the class sees it."""
        return await self._gallery.set_approval(classroom, required)

    async def clear_gallery(self, classroom: str) -> int:
        """Take every picture out of the class's gallery; how many there were."""
        return await self._gallery.clear(classroom)

    def questions_of(self, collection: str) -> list[LessonQuestion]:
        """The quick checks a lesson collection offers the teacher."""
        return [q for q in self.questions.values() if q.collection == collection]

    async def shown(self, classroom: str) -> list[pb.GalleryItem]:
        """The gallery as students see it: approved pictures, newest first."""
        return [s.item for s in await self._gallery.submissions(classroom) if s.item.status == APPROVED]

    async def class_map(self, classroom: str, include_pending: bool) -> pb.ClassMap:
        """The shared trajectories (approved, and pending too for the teacher) as paths in one projection."""
        wanted = {APPROVED, PENDING} if include_pending else {APPROVED}
        submissions = [s for s in await self._gallery.submissions(classroom) if s.item.status in wanted]
        paths = [path_of(s) for s in submissions]
        widths = [p.shape[1] for p in paths]
        common = max(set(widths), key=widths.count) if widths else 0
        kept = [(s, p) for s, p in zip(submissions, paths, strict=True) if p.shape[1] == common]
        projection = project([p for _, p in kept])
        reply = pb.ClassMap(explained_variance=projection.explained_variance, left_out=len(paths) - len(kept))
        for (submission, _), points in zip(kept, projection.paths, strict=True):
            item = submission.item
            reply.paths.add(item_id=item.id, prompt=item.request.prompt, student_name=item.student_name,
                            seed=item.request.seed, x=points[:, 0].tolist(), y=points[:, 1].tolist())  # fmt: skip
        return reply


def _texts(request: pb.GenerateRequest) -> list[str]:
    """Every text a request draws from: its prompts, and a branch's when it has one."""
    texts = [request.prompt, request.negative_prompt]
    if "branch" in request.DESCRIPTOR.fields_by_name and request.HasField("branch"):
        branch = request.branch
        texts += [getattr(branch, "prompt", ""), getattr(branch, "negative_prompt", "")]
    return texts


__all__ = ["HIDDEN", "LessonQuestion", "Together", "lesson_questions"]
