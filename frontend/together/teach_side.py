"""Lesson 10, teach it a new word: the training's live view for everyone, and the teacher's controls.

`live_training` is the view every page of the lesson shows (the student's and the
teacher's): the phase, the word, the step, the loss curve with a sentence that says
what it shows, and the latest sheet of the model's pictures. Every sentence is made
from the service's TeachingState on screen. `teach_a_word` is the teacher's side
(drawn on the teacher's page, and on the lesson's page when the teacher code is at
hand): the class's drawings with a Remove button each, the word, Teach, Stop, and
Forget the word. Teach starts the training and reads its progress stream on a thread
of its own, so the page is never held; the live view reads GetTeaching, which tells
the truth even when that stream is dropped (the training goes on).
"""

from __future__ import annotations

import threading

import streamlit as st

from frontend.client import ClassroomClient, StudentError, shapes_client
from frontend.drawing.charts import per_step
from frontend.drawing.views import guarded, plain, said
from frontend.language import N_, _
from frontend.together.teach_sentences import (  # re-exported: the lesson's page and tests read them here
    DRAWING,
    FAILED,
    PHASE_NAMES,
    STOPPED,
    TRAINING,
    UNKNOWN_PHASE,
    halves_summary,
    loss_summary,
    quoted,
    state_sentence,
)
from services.common.api import pb
from services.common.teaching import DEFAULT_STEPS

TRAINING_POLL_S = 1.5  # while the model trains: the step, the loss and the pictures change
WAITING_POLL_S = 5.0  # drawings come in, and the teacher may start the training
SETTLED_POLL_S = 10.0  # taught, stopped or failed: only the teacher can change it
FIRST_ANSWER_S = 5.0  # how long Teach waits for the service's first answer (a refusal comes at once)
DRAWING_COLUMNS = 6

NEW_WORD_LINE = N_("the class's drawings")  # the chart's series, shown as _(name)
KNOWN_LINE = N_("the four shapes it knew")


def _loss_chart(long: object, step: int) -> None:
    """The loss over the steps as the lessons draw lines (named for screen readers; no unnamed hover layer)."""
    st.vega_lite_chart(per_step(long, step, _("loss")), width="stretch", height=220)  # type: ignore[arg-type]


def show_training(state: pb.TeachingState, student: bool = True) -> None:
    """The training as it stands: phase, sentence, progress, the loss curve and the latest pictures."""
    phase = _(PHASE_NAMES.get(state.phase, UNKNOWN_PHASE))
    st.markdown(_("**Now: {phase}.**").format(phase=phase) + " " + state_sentence(state, student))
    if state.message and state.phase == FAILED:  # the other phases' sentences say it already
        st.markdown(said(state.message))
    if state.phase == TRAINING and state.total_steps:
        st.progress(
            min(1.0, state.step / state.total_steps),
            text=_("step {step} of {total}").format(step=state.step, total=state.total_steps),
        )
    losses = list(state.losses)
    if losses:
        import pandas as pd  # the lesson pages' libraries, loaded in the background at start-up

        st.markdown(
            _(
                "**The loss**: how wrong the model's guesses of the noise are on the training pictures, at each "
                "step (lower is better). A model that guessed no noise at all would score about 1; a perfect "
                "guess scores 0. It starts far below 1 because Shapes already takes noise out of pictures well; "
                "what changes is how well it does on the new shape. Each step practises on the class's drawings "
                "and, as much, on the four shapes it already knew, so that it does not forget them: the chart "
                "shows the two apart."
            )
        )
        steps = range(1, len(losses) + 1)
        halves = len(state.new_word_losses) == len(losses) == len(state.known_losses)
        if halves:
            table = pd.DataFrame({"step": steps, _(NEW_WORD_LINE): list(state.new_word_losses),
                                  _(KNOWN_LINE): list(state.known_losses)})  # fmt: skip
            _loss_chart(table.melt(id_vars="step", var_name="series", value_name="value"), len(losses))
            st.caption(halves_summary(state.new_word_losses, state.known_losses))
        else:  # a record from before the halves were kept
            _loss_chart(pd.DataFrame({"step": steps, "series": _("loss"), "value": losses}), len(losses))
            st.caption(loss_summary(losses))
    if state.samples_png:
        prompts = "; ".join(plain(prompt) for prompt in state.samples_prompts)
        said_prompts = "; ".join(plain(prompt, "text") for prompt in state.samples_prompts)
        stopped = state.phase in (STOPPED, FAILED)
        caption = (
            _("The stopped training's pictures (not used) at step {step}, asked for (left to right): {prompts}")
            if stopped
            else _("The model's pictures at step {step}, asked for (left to right): {prompts}")
        )
        alt = (
            _(
                "The stopped training's pictures (not used) at training step {step}, asked for (left to right): "
                "{prompts}"
            )
            if stopped
            else _("The model's pictures at training step {step}, asked for (left to right): {prompts}")
        )
        st.image(
            state.samples_png,
            caption=caption.format(step=state.samples_step, prompts=prompts),
            alt=alt.format(step=state.samples_step, prompts=said_prompts),
        )


def _view(state: pb.TeachingState) -> tuple[int, str]:
    return state.phase, state.taught_word


def _poll_s(state: pb.TeachingState) -> float:
    return {TRAINING: TRAINING_POLL_S, DRAWING: WAITING_POLL_S}.get(state.phase, SETTLED_POLL_S)


def live_training(state: pb.TeachingState, *, key: str, student: str = "", name: str = "") -> None:
    """`show_training`, read again every moment while something can change (a fragment: the page stays).

    `state` is what the page read in this run. When the phase or the class's word changes, the
    whole page runs again: what it offers (the canvas, the prompt box) depends on them.
    """
    st.session_state[f"{key}-view"] = _view(state)
    as_student = bool(student) and not st.session_state.get("teacher_code")  # the teacher reads the teacher's

    def read_again() -> None:
        fresh = guarded(lambda: shapes_client().teaching(student, name))
        if fresh is None:
            return
        if _view(fresh) != st.session_state.get(f"{key}-view"):
            st.session_state[f"{key}-view"] = _view(fresh)
            st.rerun()
        show_training(fresh, student=as_student)

    st.fragment(run_every=_poll_s(state))(read_again)()


# -- the teacher's side ---------------------------------------------------------------------


class TeachRun:
    """One press of Teach: the TeachWord stream's first answer (the training started, or why not), on a thread.

    The stream is left after its first state: leaving it does not stop the training, and the
    pages show GetTeaching's state, so no press keeps a stream (or a thread) open.
    """

    def __init__(self, client: ClassroomClient, code: str, word: str, steps: int) -> None:
        self.error = ""
        self.last: pb.TeachingState | None = None
        self._answered = threading.Event()
        self._thread = threading.Thread(
            target=self._read, args=(client, code, word, steps), name="teach-word", daemon=True
        )
        self._thread.start()

    def _read(self, client: ClassroomClient, code: str, word: str, steps: int) -> None:
        try:
            for state in client.teach_word(code, word, steps):
                self.last = state
                break
        except StudentError as error:
            self.error = str(error)
        finally:
            self._answered.set()

    def first_answer(self, timeout: float) -> bool:
        """Wait for the service's first answer (a state or a refusal); False when none came in time."""
        return self._answered.wait(timeout)

    def reading(self) -> bool:
        return self._thread.is_alive()


def _code() -> str:
    return st.session_state.get("teacher_code", "")


def _said(sentence: str, error: bool = False) -> None:
    st.session_state["teach-said"] = (sentence, error)


def _teach() -> None:
    word = " ".join(str(st.session_state.get("teach-word") or "").split())
    steps = int(st.session_state.get("teach-steps") or 0)
    if not word:
        _said(_("Type the new word first (one plain word, such as heart)."), error=True)
        return
    earlier = st.session_state.get("teach-run")
    if isinstance(earlier, TeachRun) and earlier.reading():
        _said(_("Teach was pressed already: waiting for the image server's answer."))
        return
    run = TeachRun(shapes_client(), _code(), word, steps)
    st.session_state["teach-run"] = run
    if not run.first_answer(FIRST_ANSWER_S):
        _said(
            _("Asked to teach {word}: the training starts when the model is free; it shows below.").format(
                word=quoted(word)
            )
        )
    elif run.error and run.last is None:
        _said(run.error, error=True)
    else:
        _said(_("Teaching {word}: the progress shows below, and on every student's page.").format(word=quoted(word)))


def _stop() -> None:
    stopped = guarded(lambda: shapes_client().stop_teaching(_code()))
    if stopped is not None:
        _said(_("Stopped the training.") if stopped else _("Nothing was training."))


def _forget() -> None:
    drawings_too = bool(st.session_state.get("teach-forget-drawings"))
    changed = guarded(lambda: shapes_client().reset_word(_code(), drawings_too))
    if changed is not None:
        again = (
            _("The class's model is plain Shapes again and its drawings are gone.")
            if drawings_too
            else _("The class's model is plain Shapes again.")
        )
        _said(again if changed else _("There was nothing to forget."))


def _remove(drawing_id: str, name: str) -> None:
    removed = guarded(lambda: shapes_client().remove_drawing(_code(), drawing_id))
    if removed is not None:  # said beside the drawings: a click there runs only their fragment again
        by = (
            _("Removed a drawing by {name}.").format(name=plain(name)) if name else _("Removed a drawing by a student.")
        )
        sentence = by if removed else _("That drawing was already gone.")
        st.session_state["teach-removed"] = sentence


def _class_drawings() -> None:
    drawings = guarded(lambda: shapes_client().drawings(_code()))
    if drawings is None:
        return
    st.markdown(
        _("**The class's drawings: {count}.** Remove any that is not the shape before you teach.").format(
            count=len(drawings)
        )
    )
    removed = st.session_state.pop("teach-removed", None)
    if removed is not None:
        st.success(removed, icon=":material/check_circle:")
    columns = st.columns(DRAWING_COLUMNS)
    for number, drawing in enumerate(drawings):
        column = columns[number % DRAWING_COLUMNS]
        who = plain(drawing.student_name, "text")
        column.image(drawing.png, width=96, alt=_("a drawing by {name}").format(name=who) if who else _("a drawing"))
        column.text(who or _("(no name)"))  # as typed, never as markdown
        column.button(
            _("Remove {name}'s drawing").format(name=plain(drawing.student_name))
            if drawing.student_name
            else _("Remove this drawing"),
            key=f"teach-remove-{drawing.drawing_id}",
            on_click=_remove,
            args=(drawing.drawing_id, drawing.student_name), help=_("Takes this drawing out of the class's set."),
        )  # fmt: skip


def teach_a_word(live: bool = True) -> None:
    """The teacher's controls for lesson 10, with the class's drawings and (`live`) the training as it goes."""
    st.header(_("Teach it a new word (lesson 10)"))
    said_now = st.session_state.pop("teach-said", None)
    if said_now is not None:
        sentence, error = said_now
        if error:
            st.error(said(sentence), icon=":material/error:")
        else:
            st.success(sentence, icon=":material/check_circle:")
    state = guarded(lambda: shapes_client().teaching())
    if state is None:
        return
    if not state.teachable:
        st.info(said(state.message) if state.message else _("This server's model cannot be taught a new word."))
        return
    st.fragment(run_every=WAITING_POLL_S)(_class_drawings)()  # students hand in; none come in while it trains
    with st.form("teach-form", border=True):
        word_column, steps_column = st.columns([2, 1])
        word_column.text_input(_("The new word"), key="teach-word", max_chars=32, placeholder=_("e.g. heart"),
                               help=_("One plain word, letters only, that the model does not know yet."))  # fmt: skip
        steps_column.number_input(_("Training steps"), key="teach-steps", min_value=1, value=None, step=10,
                                  placeholder=_("{steps} (about 2 to 4 minutes)").format(
                                      steps=DEFAULT_STEPS))  # fmt: skip
        st.form_submit_button(_("Teach"), type="primary", on_click=_teach)
    stop_column, forget_column = st.columns([1, 3])
    stop_column.button(_("Stop"), key="teach-stop", on_click=_stop, disabled=state.phase != TRAINING,
                       help=_("Stops the training; the model keeps the word it had before."))  # fmt: skip
    with forget_column.popover(_("Forget the word")):  # a second click: a class's word is not lost by a slip
        st.markdown(
            _("The class's model forgets {word}: it becomes plain Shapes again.").format(word=quoted(state.taught_word))
            if state.taught_word
            else _("Nothing is taught: it becomes plain Shapes again.")
        )
        st.checkbox(_("Delete the class's drawings too"), key="teach-forget-drawings")
        st.button(_("Forget it"), key="teach-forget", on_click=_forget, type="primary")
    run: TeachRun | None = st.session_state.get("teach-run")
    if run is not None and run.error and run.last is not None:
        st.caption(
            _("The progress stream ended ({error}); the view below reads the training itself.").format(
                error=said(run.error)
            )
        )
    if live:
        live_training(state, key="teach-teacher")
