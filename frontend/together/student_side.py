"""Teaching together, the students' side: the class's shared state, the banner and the quick check.

One thread per front-end process follows the class's state (`WatchClass`, a
server stream) and keeps the latest copy; every student session reads that copy
from memory, once a second, in a small fragment. A student's page reruns only
when the teacher starts leading (it opens the class page) or changes what the
class shows; the quick check's buttons answer for the student signed in.

Each look is a fragment run, whatever it finds: about 4 ms of the front end's CPU
and about 20 ms of the student's browser (measured, docs/benchmarks.md, "A class of
browsers"). Once a second, 200 students keep one front-end process 0.8 CPU-seconds
a second busy; twice a second, as before, they needed more than the one core a
Python process can use.
"""

from __future__ import annotations

import logging
import threading
import time

import grpc
import streamlit as st

from frontend.client import ClassroomClient, StudentError, get_client, student_id
from frontend.drawing.views import plain, said
from frontend.language import N_, _, ngettext
from frontend.stream.load import load
from frontend.together.menu import led_title
from services.common.api import pb

log = logging.getLogger(__name__)

FOLLOW_PAGE = "screens/follow.py"  # the page that shows what the teacher leads
FOLLOW_EVERY_S = 1.0  # how often a student's page looks at the class's state (in memory, no call to the service)
RETRY_AFTER_S = 2.0  # after the stream broke (a restart): watch again this soon
LETTERS = "ABCDEF"


class ClassWatcher:
    """The class's latest state, kept by a thread that follows the service's WatchClass stream."""

    def __init__(self, client: ClassroomClient) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._state: pb.ClassState | None = None
        self._thread = threading.Thread(target=self._follow, name="class-watcher", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        while True:
            try:
                for state in self._client.watch_class():
                    with self._lock:
                        self._state = state
            except grpc.RpcError as error:
                if error.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
                    log.warning("following the class's state failed: %s", error.details())
            except Exception:
                log.exception("following the class's state failed")
            time.sleep(RETRY_AFTER_S)

    def state(self) -> pb.ClassState | None:
        """The class's state as last heard (None until the service first answered)."""
        with self._lock:
            return self._state


@st.cache_resource
def class_watcher() -> ClassWatcher:
    """The one watcher of this front-end process (for its class)."""
    return ClassWatcher(get_client())


def class_state() -> pb.ClassState:
    return class_watcher().state() or pb.ClassState()


def is_teacher() -> bool:
    """Whether the session opened the teacher's page (with the teacher code): the teacher leads, and is not led."""
    return bool(st.session_state.get("teacher_code"))


def back_to_the_teacher() -> None:
    """One click: the class page again, at the teacher's step (a new player starts there)."""
    st.session_state["follow-nonce"] = st.session_state.get("follow-nonce", 0) + 1
    st.session_state["follow-back"] = True


def follow_view(present: pb.PresentState) -> tuple[object, ...]:
    """What the follow page shows, in short: when it changes, that page is drawn again."""
    return (present.leading, present.lead_id, present.example_id, present.step, present.show_map,
            st.session_state.get("follow-nonce", 0))  # fmt: skip


def class_banner(on_follow_page: bool) -> None:
    """On every page, above it: go along when the teacher starts leading, a banner while they do, the quick check."""
    st.session_state["follow-page-drawing"] = True  # this run draws the page anyway: no rerun for it
    _banner(on_follow_page)


@st.fragment(run_every=FOLLOW_EVERY_S)
def _banner(on_follow_page: bool) -> None:
    """The banner; on the follow page it reruns the page when the teacher changed what the page shows."""
    state = class_state()
    present = state.present
    drawing = st.session_state.pop("follow-page-drawing", False)
    if on_follow_page and not drawing and follow_view(present) != st.session_state.get("follow-drawn"):
        st.rerun()
    if st.session_state.pop("follow-back", False) and not on_follow_page:
        st.switch_page(FOLLOW_PAGE)
    # Once per lead: a student may then look elsewhere. One already on the follow page when the lead
    # starts has followed it too: leaving that page later is their choice, not a page to be sent back to.
    if present.leading and not is_teacher() and st.session_state.get("followed-lead") != present.lead_id:
        st.session_state["followed-lead"] = present.lead_id
        if not on_follow_page:
            st.switch_page(FOLLOW_PAGE)
    if present.leading and not is_teacher() and not on_follow_page:
        left, right = st.columns([4, 1])
        leading = _("Your teacher is leading the class: {lesson}.").format(lesson=plain(led_title(present)))
        left.info(leading, icon=":material/co_present:")
        right.button(_("Back to the teacher"), key="banner-back", on_click=back_to_the_teacher, type="primary")
    if state.HasField("quick_check") and not is_teacher():
        quick_check(state.quick_check)


def _answer(question_id: str, choice: int) -> None:
    answers = st.session_state.setdefault("quick-check-answers", {})
    try:
        answers[question_id] = get_client().answer_quick_check(
            question_id, choice, student_id(), st.session_state.get("display_name", "")
        )
    except StudentError as error:
        if error.code == grpc.StatusCode.ALREADY_EXISTS:
            answers.setdefault(question_id, choice)
        st.session_state["quick-check-said"] = str(error)


def choice_label(check: pb.QuickCheck, index: int) -> str:
    """An answer's letter and the teacher's words for it, as markdown (a button's label, a sentence)."""
    choice = check.choices[index]
    if choice.text:
        return f"{LETTERS[index]}: {plain(choice.text)}"
    return _("Picture {letter}").format(letter=LETTERS[index])


def quick_check(check: pb.QuickCheck) -> None:
    """The teacher's question with its answers as buttons; after the reveal, the right answer and the tally."""
    mine = st.session_state.get("quick-check-answers", {}).get(check.id)
    with st.container(border=True):
        st.markdown(_("**Quick check:** {question}").format(question=plain(check.question)))
        columns = st.columns(len(check.choices))
        for index, (column, choice) in enumerate(zip(columns, check.choices, strict=True)):
            if choice.entry_id:
                try:
                    run = load(choice.request, lesson_entry=choice.entry_id, planned="picture")
                    # Its prompt may be the answer: the alt names the picture as the caption does, no more.
                    picture = _("Picture {letter}").format(letter=LETTERS[index])
                    alt = _("Picture {letter}, one of the answers").format(letter=LETTERS[index])
                    column.image(run.image, caption=picture, width=128, alt=alt)
                except StudentError as error:
                    column.caption(said(str(error)))
            chosen = mine == index
            column.button(
                choice_label(check, index) + (_(" (your answer)") if chosen else ""), key=f"qc-{check.id}-{index}",
                on_click=_answer, args=(check.id, index), disabled=mine is not None or check.revealed,
                type="primary" if chosen else "secondary",
                wrap=True,  # in a column a long answer was cut to "A: [click](http://example.c…"; now it wraps
            )  # fmt: skip
        if sentence := st.session_state.pop("quick-check-said", None):
            st.warning(said(sentence))
        if check.revealed:
            right = check.answer
            counts = ", ".join(f"{LETTERS[i]}: {n}" for i, n in enumerate(check.tally))
            verdict = "" if mine is None else (_(" You got it!") if mine == right else _(" Not this time."))
            st.success(_("The answer is {answer}.{verdict} Answers: {counts}.").format(
                answer=choice_label(check, right), verdict=verdict, counts=counts))  # fmt: skip
        elif mine is not None:
            answered = ngettext(
                "Answered. {count} answer so far; your teacher will show the right one.",
                "Answered. {count} answers so far; your teacher will show the right one.",
                check.answered,
            )
            st.caption(answered.format(count=check.answered))


SHARED = N_("Shared with the class: your teacher will look at it before it appears in the gallery.")
SHARED_STRAIGHT = N_("Shared with the class: it is in the gallery now.")


def share_to_class(run: object, key: str, client: ClassroomClient | None = None) -> None:
    """A button that shares a finished picture (a TrajectoryView) to the class gallery, by the service's key for it.

    `client`: the service that kept the picture (Shapes beside the main model shares through the same Redis).
    """
    trajectory_key = getattr(run, "key", "")
    if not trajectory_key or getattr(run, "flagged", False):
        return
    if st.button(_("Share with the class"), key=key, icon=":material/ios_share:"):
        try:
            sharing = client or get_client()
            item = sharing.share_to_gallery(trajectory_key, student_id(), st.session_state.get("display_name", ""))
        except StudentError as error:
            st.error(said(str(error)), icon=":material/error:")
            return
        st.success(_(SHARED if item.status == pb.SUBMISSION_STATUS_PENDING else SHARED_STRAIGHT))
