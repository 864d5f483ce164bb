"""Teaching together, the teacher's side: lead the class, ask a quick check, review the gallery, see the class map.

Drawn on the teacher's page (`frontend/screens/teacher.py` calls `teach_together`).
Every action goes to the inference service with the teacher code, so the class
follows it whichever front-end replica each student's page runs on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import grpc
import streamlit as st

from frontend.client import StudentError, get_client
from frontend.drawing.look import alt_text
from frontend.drawing.views import guarded, plain, said
from frontend.language import N_, _, number, percent
from frontend.player import play_trajectory
from frontend.stream.load import load, ready
from frontend.together.map_chart import draw_class_map
from frontend.together.menu import BY_PAGE, LESSONS
from frontend.together.student_side import LETTERS, choice_label
from services.common.api import pb

T = TypeVar("T")
STATUS_WORDS = {
    pb.SUBMISSION_STATUS_PENDING: N_("waiting for you"),
    pb.SUBMISSION_STATUS_APPROVED: N_("in the gallery"),
    pb.SUBMISSION_STATUS_HIDDEN: N_("hidden"),
}


def _code() -> str:
    return st.session_state.teacher_code


def _said(sentence: str) -> None:
    st.session_state["together-said"] = sentence


def served_without_computing(room: pb.GetClassroomResponse) -> tuple[str, str]:
    """The teacher's metric of pictures served with no model work: named for the GPU only where there is one."""
    stats = room.stats
    served = stats.cache_hits + stats.single_flight_joins + stats.cache_misses
    label = _("Served without the GPU") if room.gpu_memory_total_bytes else _("Served without computing")
    return label, percent(room.cache_hit_rate) if served else _("nothing served yet")


def pictures_per_call(room: pb.GetClassroomResponse) -> str:
    """The teacher's batching figure; before the first UNet call its average is 0.0, which reads as broken."""
    return number(room.average_batch_size, digits=1) if room.average_batch_size else _("none yet")


# -- leading the class --------------------------------------------------------------


@st.cache_data(ttl=30, show_spinner=False)
def _catalog() -> bytes:
    return get_client().lessons().SerializeToString()


def catalog() -> pb.ListLessonsResponse:
    return pb.ListLessonsResponse.FromString(_catalog())


def _entry_label(entry: pb.LessonEntry) -> str:
    labels = ", ".join(f"{k} {v}" for k, v in sorted(entry.labels.items()) if k not in ("pair", "side", "prompt"))
    return plain(f"{entry.request.prompt} ({labels})", "text")  # a select box's option: shown as it is


def _push(leading: bool | None = None) -> None:
    """Send what the teacher shows now (after a change of example, step or map, while leading; or Lead/Release)."""
    state = guarded(lambda: get_client().class_state())
    lead = state.present.leading if state is not None else False
    if leading is None and not lead:
        return  # not leading: the choices wait for "Lead the class"
    leading = lead if leading is None else leading
    example_id = st.session_state.get("lead-example") or ""
    step = int(st.session_state.get("lead-step", 0))
    show_map = bool(st.session_state.get("lead-map", False))
    lesson = st.session_state.get("lead-lesson") or ""
    sent = guarded(lambda: get_client().set_present(_code(), leading, example_id, step, show_map, lesson))
    if sent is not None and not leading:
        _said(_("You released the class."))


def _lesson_changed() -> None:
    """Another lesson: its first example, sent at once while leading."""
    lesson = BY_PAGE.get(st.session_state.get("lead-lesson") or "")
    first = next((e.id for e in lesson.examples(list(catalog().entries))), None) if lesson is not None else None
    if first is not None:
        st.session_state["lead-example"] = first
    _push()


def lead_the_class() -> None:
    st.subheader(_("Lead the class"))
    listing = catalog()
    # The menu's lessons (as the students see them), those with examples on this server.
    pages = [lesson.page for lesson in LESSONS if lesson.examples(list(listing.entries))]
    if not pages:
        st.caption(_("There are no lesson examples on this server to lead with."))
        return
    page = st.selectbox(_("Lesson"), pages, format_func=lambda p: _(BY_PAGE[p].title), key="lead-lesson",
                        on_change=_lesson_changed)  # fmt: skip
    entries = BY_PAGE[page].examples(list(listing.entries))
    by_id = {entry.id: entry for entry in entries}  # chosen by id: a fresh listing keeps the choice
    if st.session_state.get("lead-example") not in by_id:
        st.session_state["lead-example"] = entries[0].id
    chosen = st.selectbox(_("Example"), list(by_id), format_func=lambda i: _entry_label(by_id[i]), key="lead-example",
                          on_change=_push)  # fmt: skip
    example = by_id[chosen]
    steps = example.request.num_inference_steps
    if st.session_state.get("lead-step", 0) > steps:
        st.session_state["lead-step"] = steps
    step_column, map_column = st.columns([3, 1])
    step_column.number_input(_("Step (0: the starting noise)"), 0, steps, key="lead-step", on_change=_push)
    map_column.toggle(_("Show the class map"), key="lead-map", on_change=_push)
    state = guarded(lambda: get_client().class_state())
    leading = state is not None and state.present.leading
    if leading:
        leading_now = _("You are leading the class: step {step} of {steps}.").format(
            step=state.present.step, steps=steps
        )
        st.success(leading_now, icon=":material/co_present:")
        st.button(_("Release"), key="lead-release", on_click=_push, args=(False,))
    else:
        st.button(_("Lead the class"), key="lead-start", on_click=_push, args=(True,), type="primary")
    if example.cache_state != pb.CACHE_STATE_LESSON and not ready(example.request):
        # Never computed here: the teacher's page does not wait for it (nor hold a paused class's queue).
        st.caption(_("This example is not precomputed yet: students wait for it to compute when you lead. "
                     "Precompute the lessons first."))  # fmt: skip
        return
    run = guarded(lambda: load(example.request, lesson_entry=example.id))
    if run is not None:
        play_trajectory(run, key="lead-preview", start=int(st.session_state["lead-step"]), width=160)


# -- quick checks ----------------------------------------------------------------------


def _ask_lesson_question(question_id: str) -> None:
    if guarded(lambda: get_client().ask_quick_check(_code(), lesson_question_id=question_id)) is not None:
        _said(_("Question asked: it is on every student's page."))


def _ask_own() -> None:
    question = st.session_state.get("qc-own-question", "")
    choices = tuple(line for line in st.session_state.get("qc-own-choices", "").splitlines() if line.strip())
    right = int(st.session_state.get("qc-own-answer", 1)) - 1
    asked = guarded(lambda: get_client().ask_quick_check(_code(), question=question, choices=choices, answer=right))
    if asked is not None:
        _said(_("Question asked: it is on every student's page."))


def ask_a_question() -> None:
    st.subheader(_("Quick check"))
    listing = catalog()
    questions = {q.id: q for c in listing.collections for q in c.questions}
    if questions:
        chosen = st.selectbox(_("A lesson's question"), list(questions),
                              format_func=lambda q: plain(questions[q].question, "text"), key="qc-lesson")  # fmt: skip
        st.button(_("Ask this question"), key="qc-ask-lesson", on_click=_ask_lesson_question, args=(chosen,))
    # A form: the question, its answers and the right one's number reach the service together, as typed.
    with st.expander(_("Ask your own question")), st.form("qc-own", border=False):
        st.text_input(_("Question"), max_chars=200, key="qc-own-question")
        st.text_area(_("Answers, one per line (2 to 6)"), key="qc-own-choices")
        st.number_input(_("The right answer's number"), 1, 6, 1, key="qc-own-answer")
        st.form_submit_button(_("Ask my question"), on_click=_ask_own)
    live_tally()


def _reveal() -> None:
    guarded(lambda: get_client().reveal_quick_check(_code()))


def _close() -> None:
    guarded(lambda: get_client().close_quick_check(_code()))


@st.fragment(run_every=1)
def live_tally() -> None:
    """The open question's answers as they come, with Reveal and Close."""
    check = guarded(lambda: get_client().quick_check(_code()))
    if check is None:
        st.caption(_("No question is open."))
        return
    st.markdown(_("**{question}**: {count} answer(s)").format(question=plain(check.question), count=check.answered))
    for index, count in enumerate(check.tally):
        right = _(" (right)") if index == check.answer else ""
        st.progress(count / check.answered if check.answered else 0.0,
                    text=f"{choice_label(check, index)}{right}: {count}")  # fmt: skip
    reveal, close = st.columns(2)
    reveal.button(_("Reveal the answer"), key="qc-reveal", on_click=_reveal, disabled=check.revealed, type="primary")
    close.button(_("Close the question"), key="qc-close", on_click=_close)
    if check.revealed:
        st.caption(_("Revealed: every student sees {letter} and the tally.").format(letter=LETTERS[check.answer]))


# -- the gallery and the map -------------------------------------------------------------


def _unless_away(action: Callable[[], T]) -> T | None:
    """A gallery call; when the gallery's store is away (no Redis), a note rather than an error."""
    try:
        return action()
    except StudentError as error:
        if error.code == grpc.StatusCode.FAILED_PRECONDITION:
            st.info(said(str(error)), icon=":material/cloud_off:")
        else:
            st.error(said(str(error)), icon=":material/error:")
        return None


def _review(item_id: str, approve: bool) -> None:
    guarded(lambda: get_client().review_submission(_code(), item_id, approve))


def _approval() -> None:
    required = bool(st.session_state.get("gallery-approval", True))
    guarded(lambda: get_client().set_gallery_approval(_code(), required))


def _clear_gallery() -> None:
    cleared = guarded(lambda: get_client().clear_gallery(_code()))
    if cleared is not None:
        _said(_("Cleared the gallery ({count} picture(s)).").format(count=cleared))


@st.fragment(run_every=3)
def review_the_gallery() -> None:
    st.subheader(_("Class gallery"))
    listing = _unless_away(lambda: get_client().submissions(_code()))
    if listing is None:
        return
    st.session_state["gallery-approval"] = listing.approval_required
    left, right = st.columns([3, 1])
    left.toggle(_("Shared pictures wait for my approval"), key="gallery-approval", on_change=_approval)
    right.button(_("Clear the gallery"), key="gallery-clear", on_click=_clear_gallery, disabled=not listing.items)
    if not listing.items:
        st.caption(_("Nothing shared yet."))
    for item in listing.items:
        picture, words, buttons = st.columns([1, 4, 2])
        who = item.student_name or _("a classmate")
        picture.image(item.picture.data, width=64, alt=alt_text(
            _("a shared picture"), item.request.prompt, _("by {name}").format(name=who)))  # fmt: skip
        status = STATUS_WORDS.get(item.status)
        words.markdown(_("“{prompt}”  \nby {name}, seed {seed}: **{status}**").format(
            prompt=plain(item.request.prompt), name=plain(who), seed=item.request.seed,
            status=_(status) if status else ""))  # fmt: skip
        approve, hide = buttons.columns(2)
        approve.button(_("Approve"), key=f"gallery-approve-{item.id}", on_click=_review, args=(item.id, True),
                       disabled=item.status == pb.SUBMISSION_STATUS_APPROVED)  # fmt: skip
        hide.button(_("Hide"), key=f"gallery-hide-{item.id}", on_click=_review, args=(item.id, False),
                    disabled=item.status == pb.SUBMISSION_STATUS_HIDDEN)  # fmt: skip


def class_map() -> None:
    st.subheader(_("The class map"))
    shared = _unless_away(lambda: get_client().submission_map(_code()))
    if shared is not None:
        draw_class_map(shared)


def teach_together() -> None:
    """The teacher's tools for the whole class: lead, ask, review the gallery, the map."""
    st.header(_("Teach together"))
    lead, ask, gallery, drawn = st.tabs([_("Lead the class"), _("Quick check"), _("Gallery"), _("Class map")])
    with lead:
        lead_the_class()
    with ask:
        ask_a_question()
    with gallery:
        review_the_gallery()
    with drawn:
        class_map()
    # After the tabs: an element before them would move them, and the teacher's open tab would close.
    if sentence := st.session_state.pop("together-said", None):
        st.toast(sentence)
