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
from collections.abc import Sequence

import streamlit as st

from frontend.client import ClassroomClient, StudentError, shapes_client
from frontend.drawing.charts import per_step
from frontend.drawing.views import guarded, plain, said
from services.common.api import pb
from services.common.teaching import DEFAULT_STEPS, MIN_DRAWINGS, PER_CLASS, PER_STUDENT

TRAINING_POLL_S = 1.5  # while the model trains: the step, the loss and the pictures change
WAITING_POLL_S = 5.0  # drawings come in, and the teacher may start the training
SETTLED_POLL_S = 10.0  # taught, stopped or failed: only the teacher can change it
FIRST_ANSWER_S = 5.0  # how long Teach waits for the service's first answer (a refusal comes at once)
DRAWING_COLUMNS = 6

DRAWING = pb.TEACHING_PHASE_DRAWING
TRAINING = pb.TEACHING_PHASE_TRAINING
TAUGHT = pb.TEACHING_PHASE_TAUGHT
STOPPED = pb.TEACHING_PHASE_STOPPED
FAILED = pb.TEACHING_PHASE_FAILED
PHASE_NAMES = {
    DRAWING: "handing in drawings",
    TRAINING: "training",
    TAUGHT: "taught",
    STOPPED: "stopped",
    FAILED: "failed",
}


NEW_WORD_LINE = "the class's drawings"
KNOWN_LINE = "the four shapes it knew"


def _number(value: float) -> str:
    return f"{value:.3g}"


def _ends(losses: Sequence[float]) -> tuple[float, float, int]:
    """The start and end of a noisy loss curve: averages of its first and last tenth (at most 10 steps)."""
    each = max(1, min(10, len(losses) // 10))
    return sum(losses[:each]) / each, sum(losses[-each:]) / each, each


def loss_summary(losses: Sequence[float], what: str = "The loss") -> str:
    """One sentence saying what the loss curve shows, from its numbers (for everyone, screen readers too).

    The loss of one step is noisy (each step trains on a few random pictures), so with enough
    steps the start and the end are the averages of the first and the last tenth (at most 10 steps).
    """
    count = len(losses)
    if count == 0:
        return "No training steps yet, so there is no loss to show."
    if count == 1:
        return f"{what} was {_number(losses[0])} after the first step."
    start, end, each = _ends(losses)
    first, last = _number(start), _number(end)
    averaged = f" (averages of the first {each} and the last {each} steps)" if each > 1 else ""
    if first == last:
        return f"{what} stayed at about {first} over {count} steps{averaged}."
    verb = "fell" if end < start else "rose"
    return f"{what} {verb} from {first} to {last} over {count} steps{averaged}."


FORGETTING = 1.1  # the known shapes' loss this much above where it started: the model is forgetting them


def halves_summary(new_word: Sequence[float], known: Sequence[float]) -> str:
    """What the two halves of the training show: the new word learned, the old shapes kept (or not)."""
    said_new = loss_summary(new_word, "On the class's drawings, the loss")
    said_known = loss_summary(known, "On the four shapes it already knew, the loss")
    if len(known) < 2:
        return f"{said_new} {said_known}"
    start, end, _ = _ends(known)
    if end > FORGETTING * start:
        verdict = "It is getting worse at the shapes it knew: it is starting to forget them."
    elif end > start:
        verdict = (
            "That rise is less than a tenth, about as much as the loss moves from step to step: it has not got "
            "worse at the shapes it knew, since practising them alongside keeps them."
        )
    else:
        verdict = "It has not got worse at the shapes it knew: practising them alongside keeps them."
    return f"{said_new} {said_known} {verdict}"


def _quoted(word: str) -> str:
    return f"“{plain(word)}”"


def state_sentence(state: pb.TeachingState, student: bool = True) -> str:
    """Where the class's teaching stands, in one or two sentences made from the state (markdown)."""
    word = _quoted(state.word) if state.word else "the new word"
    drawings = f"{state.drawings} drawing{'s' if state.drawings != 1 else ''}"
    yours = f", {state.yours} of them yours" if student else ""
    if state.phase == TRAINING:
        return (
            f"The model is learning {word}: step **{state.step} of {state.total_steps}**, "
            f"{state.seconds:.0f} s so far. The class's set has {drawings}."
        )
    if state.phase == TAUGHT:
        return (
            f"Your class's model was trained on {_quoted(state.taught_word or state.word)} for {state.step} "
            f"steps ({state.seconds:.0f} s). Its pictures below show what it made of the word."
            + (
                f" That is fewer than the {DEFAULT_STEPS} steps the recipe was measured with: its pictures may "
                "not look like the drawings yet."
                if state.step < DEFAULT_STEPS
                else ""
            )
        )
    if state.phase in (STOPPED, FAILED):
        what = (
            (f"Your teacher stopped the training of {word}" if student else f"You stopped the training of {word}")
            if state.phase == STOPPED
            else f"The training of {word} failed"
        )
        knows = (
            f" The class's model knows {_quoted(state.taught_word)}."
            if state.taught_word
            else " The class's model is plain Shapes: it knows no new word."
        )
        return f"{what} at step {state.step} of {state.total_steps}.{knows}"
    then = (
        "When your teacher names the word and presses Teach, the training shows here."
        if student
        else "Name the word and press Teach: the training shows here, and on every student's page."
    )
    need = (
        f" Teaching needs at least {MIN_DRAWINGS}; a student hands in at most {PER_STUDENT}, the class at most "
        f"{PER_CLASS}."
    )
    return f"Nothing taught yet. The class has handed in {drawings}{yours}.{need} {then}"


def _loss_chart(long: object, step: int) -> None:
    """The loss over the steps as the lessons draw lines (named for screen readers; no unnamed hover layer)."""
    st.vega_lite_chart(per_step(long, step, "loss"), width="stretch", height=220)  # type: ignore[arg-type]


def show_training(state: pb.TeachingState, student: bool = True) -> None:
    """The training as it stands: phase, sentence, progress, the loss curve and the latest pictures."""
    st.markdown(f"**Now: {PHASE_NAMES.get(state.phase, 'unknown')}.** {state_sentence(state, student)}")
    if state.message and state.phase == FAILED:  # the other phases' sentences say it already
        st.markdown(said(state.message))
    if state.phase == TRAINING and state.total_steps:
        st.progress(min(1.0, state.step / state.total_steps), text=f"step {state.step} of {state.total_steps}")
    losses = list(state.losses)
    if losses:
        import pandas as pd  # the lesson pages' libraries, loaded in the background at start-up

        st.markdown(
            "**The loss**: how wrong the model's guesses of the noise are on the training pictures, at each "
            "step (lower is better). A model that guessed no noise at all would score about 1; a perfect "
            "guess scores 0. It starts far below 1 because Shapes already takes noise out of pictures well; "
            "what changes is how well it does on the new shape. Each step practises on the class's drawings "
            "and, as much, on the four shapes it already knew, so that it does not forget them: the chart "
            "shows the two apart."
        )
        steps = range(1, len(losses) + 1)
        halves = len(state.new_word_losses) == len(losses) == len(state.known_losses)
        if halves:
            table = pd.DataFrame({"step": steps, NEW_WORD_LINE: list(state.new_word_losses),
                                  KNOWN_LINE: list(state.known_losses)})  # fmt: skip
            _loss_chart(table.melt(id_vars="step", var_name="series", value_name="value"), len(losses))
            st.caption(halves_summary(state.new_word_losses, state.known_losses))
        else:  # a record from before the halves were kept
            _loss_chart(pd.DataFrame({"step": steps, "series": "loss", "value": losses}), len(losses))
            st.caption(loss_summary(losses))
    if state.samples_png:
        prompts = "; ".join(plain(prompt) for prompt in state.samples_prompts)
        said_prompts = "; ".join(plain(prompt, "text") for prompt in state.samples_prompts)
        whose = (
            "The stopped training's pictures (not used)" if state.phase in (STOPPED, FAILED) else "The model's pictures"
        )
        st.image(
            state.samples_png,
            caption=f"{whose} at step {state.samples_step}, asked for (left to right): {prompts}",
            alt=f"{whose} at training step {state.samples_step}, asked for (left to right): {said_prompts}",
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
        _said("Type the new word first (one plain word, such as heart).", error=True)
        return
    earlier = st.session_state.get("teach-run")
    if isinstance(earlier, TeachRun) and earlier.reading():
        _said("Teach was pressed already: waiting for the image server's answer.")
        return
    run = TeachRun(shapes_client(), _code(), word, steps)
    st.session_state["teach-run"] = run
    if not run.first_answer(FIRST_ANSWER_S):
        _said(f"Asked to teach {_quoted(word)}: the training starts when the model is free; it shows below.")
    elif run.error and run.last is None:
        _said(run.error, error=True)
    else:
        _said(f"Teaching {_quoted(word)}: the progress shows below, and on every student's page.")


def _stop() -> None:
    stopped = guarded(lambda: shapes_client().stop_teaching(_code()))
    if stopped is not None:
        _said("Stopped the training." if stopped else "Nothing was training.")


def _forget() -> None:
    drawings_too = bool(st.session_state.get("teach-forget-drawings"))
    changed = guarded(lambda: shapes_client().reset_word(_code(), drawings_too))
    if changed is not None:
        gone = " and its drawings are gone" if drawings_too else ""
        _said(f"The class's model is plain Shapes again{gone}." if changed else "There was nothing to forget.")


def _remove(drawing_id: str, name: str) -> None:
    removed = guarded(lambda: shapes_client().remove_drawing(_code(), drawing_id))
    if removed is not None:  # said beside the drawings: a click there runs only their fragment again
        whose = plain(name) if name else "a student"
        sentence = f"Removed a drawing by {whose}." if removed else "That drawing was already gone."
        st.session_state["teach-removed"] = sentence


def _class_drawings() -> None:
    drawings = guarded(lambda: shapes_client().drawings(_code()))
    if drawings is None:
        return
    st.markdown(f"**The class's drawings: {len(drawings)}.** Remove any that is not the shape before you teach.")
    removed = st.session_state.pop("teach-removed", None)
    if removed is not None:
        st.success(removed, icon=":material/check_circle:")
    columns = st.columns(DRAWING_COLUMNS)
    for number, drawing in enumerate(drawings):
        column = columns[number % DRAWING_COLUMNS]
        who = plain(drawing.student_name, "text")
        column.image(drawing.png, width=96, alt=f"a drawing by {who}" if who else "a drawing")
        column.text(who or "(no name)")  # as typed, never as markdown
        column.button(
            f"Remove {plain(drawing.student_name)}'s drawing" if drawing.student_name else "Remove this drawing",
            key=f"teach-remove-{drawing.drawing_id}",
            on_click=_remove,
            args=(drawing.drawing_id, drawing.student_name), help="Takes this drawing out of the class's set.",
        )  # fmt: skip


def teach_a_word(live: bool = True) -> None:
    """The teacher's controls for lesson 10, with the class's drawings and (`live`) the training as it goes."""
    st.header("Teach it a new word (lesson 10)")
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
        st.info(said(state.message) if state.message else "This server's model cannot be taught a new word.")
        return
    st.fragment(run_every=WAITING_POLL_S)(_class_drawings)()  # students hand in; none come in while it trains
    with st.form("teach-form", border=True):
        word_column, steps_column = st.columns([2, 1])
        word_column.text_input("The new word", key="teach-word", max_chars=32, placeholder="e.g. heart",
                               help="One plain word, letters only, that the model does not know yet.")  # fmt: skip
        steps_column.number_input("Training steps", key="teach-steps", min_value=1, value=None, step=10,
                                  placeholder="250 (about 2 to 4 minutes)")  # fmt: skip
        st.form_submit_button("Teach", type="primary", on_click=_teach)
    stop_column, forget_column = st.columns([1, 3])
    stop_column.button("Stop", key="teach-stop", on_click=_stop, disabled=state.phase != TRAINING,
                       help="Stops the training; the model keeps the word it had before.")  # fmt: skip
    with forget_column.popover("Forget the word"):  # a second click: a class's word is not lost by a slip
        known = f"The class's model forgets {_quoted(state.taught_word)}" if state.taught_word else "Nothing is taught"
        st.markdown(f"{known}: it becomes plain Shapes again.")
        st.checkbox("Delete the class's drawings too", key="teach-forget-drawings")
        st.button("Forget it", key="teach-forget", on_click=_forget, type="primary")
    run: TeachRun | None = st.session_state.get("teach-run")
    if run is not None and run.error and run.last is not None:
        st.caption(f"The progress stream ended ({said(run.error)}); the view below reads the training itself.")
    if live:
        live_training(state, key="teach-teacher")
