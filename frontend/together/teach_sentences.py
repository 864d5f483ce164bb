"""Lesson 10's sentences about the training, made from the service's TeachingState (in the reader's language).

What the loss curve shows (`loss_summary`, `halves_summary`: for everyone, screen readers too) and
where the class's teaching stands (`state_sentence`), with the phases' names. The live view and the
teacher's controls (`frontend/together/teach_side.py`) show them; every number comes from the state.
"""

from __future__ import annotations

from collections.abc import Sequence

from frontend.drawing.views import plain
from frontend.language import N_, _, ngettext, number
from services.common.api import pb
from services.common.teaching import DEFAULT_STEPS, MIN_DRAWINGS, PER_CLASS, PER_STUDENT

DRAWING = pb.TEACHING_PHASE_DRAWING
TRAINING = pb.TEACHING_PHASE_TRAINING
TAUGHT = pb.TEACHING_PHASE_TAUGHT
STOPPED = pb.TEACHING_PHASE_STOPPED
FAILED = pb.TEACHING_PHASE_FAILED
PHASE_NAMES = {
    DRAWING: N_("handing in drawings"),
    TRAINING: N_("training"),
    TAUGHT: N_("taught"),
    STOPPED: N_("stopped"),
    FAILED: N_("failed"),
}  # shown as _(name)
UNKNOWN_PHASE = N_("unknown")

FORGETTING = 1.1  # the known shapes' loss this much above where it started: the model is forgetting them


def _number(value: float) -> str:
    """Three significant digits, as the English sentence compares them (0.0123); `_shown` writes them."""
    return f"{value:.3g}"


def _shown(text: str) -> str:
    """A `_number` as the reader's language writes it (0,0123 in Spanish and French); as it is in exponent form."""
    if "e" in text:
        return text
    return number(float(text), digits=len(text.partition(".")[2]))


def _ends(losses: Sequence[float]) -> tuple[float, float, int]:
    """The start and end of a noisy loss curve: averages of its first and last tenth (at most 10 steps)."""
    each = max(1, min(10, len(losses) // 10))
    return sum(losses[:each]) / each, sum(losses[-each:]) / each, each


def loss_summary(losses: Sequence[float], what: str = "") -> str:
    """One sentence saying what the loss curve shows, from its numbers (for everyone, screen readers too).

    `what` names the loss, translated ("On the class's drawings, the loss"); "The loss" when not given.
    The loss of one step is noisy (each step trains on a few random pictures), so with enough
    steps the start and the end are the averages of the first and the last tenth (at most 10 steps).
    """
    what = what or _("The loss")
    count = len(losses)
    if count == 0:
        return _("No training steps yet, so there is no loss to show.")
    if count == 1:
        return _("{what} was {value} after the first step.").format(what=what, value=_shown(_number(losses[0])))
    start, end, each = _ends(losses)
    first, last = _number(start), _number(end)
    if first == last:
        sentence = (
            _(
                "{what} stayed at about {first} over {count} steps (averages of the first {each} and the last "
                "{each} steps)."
            )
            if each > 1
            else _("{what} stayed at about {first} over {count} steps.")
        )
    elif end < start:
        sentence = (
            _(
                "{what} fell from {first} to {last} over {count} steps (averages of the first {each} and the last "
                "{each} steps)."
            )
            if each > 1
            else _("{what} fell from {first} to {last} over {count} steps.")
        )
    else:
        sentence = (
            _(
                "{what} rose from {first} to {last} over {count} steps (averages of the first {each} and the last "
                "{each} steps)."
            )
            if each > 1
            else _("{what} rose from {first} to {last} over {count} steps.")
        )
    return sentence.format(what=what, first=_shown(first), last=_shown(last), count=count, each=each)


def halves_summary(new_word: Sequence[float], known: Sequence[float]) -> str:
    """What the two halves of the training show: the new word learned, the old shapes kept (or not)."""
    said_new = loss_summary(new_word, _("On the class's drawings, the loss"))
    said_known = loss_summary(known, _("On the four shapes it already knew, the loss"))
    if len(known) < 2:
        return f"{said_new} {said_known}"
    start, end, _each = _ends(known)
    if end > FORGETTING * start:
        verdict = _("It is getting worse at the shapes it knew: it is starting to forget them.")
    elif end > start:
        verdict = _(
            "That rise is less than a tenth, about as much as the loss moves from step to step: it has not got "
            "worse at the shapes it knew, since practising them alongside keeps them."
        )
    else:
        verdict = _("It has not got worse at the shapes it knew: practising them alongside keeps them.")
    return f"{said_new} {said_known} {verdict}"


def quoted(word: str) -> str:
    """A word the teacher typed, in the lessons' quotation marks, shown as typed."""
    return f"“{plain(word)}”"


def _settled_sentence(state: pb.TeachingState, word: str, student: bool) -> str:
    """Stopped or failed: at which step, and which word the class's model knows now."""
    what = (
        (
            _("Your teacher stopped the training of {word} at step {step} of {total}.")
            if student
            else _("You stopped the training of {word} at step {step} of {total}.")
        )
        if state.phase == STOPPED
        else _("The training of {word} failed at step {step} of {total}.")
    ).format(word=word, step=state.step, total=state.total_steps)
    knows = (
        _("The class's model knows {word}.").format(word=quoted(state.taught_word))
        if state.taught_word
        else _("The class's model is plain Shapes: it knows no new word.")
    )
    return f"{what} {knows}"


def state_sentence(state: pb.TeachingState, student: bool = True) -> str:
    """Where the class's teaching stands, in one or two sentences made from the state (markdown)."""
    word = quoted(state.word) if state.word else _("the new word")
    if state.phase == TRAINING:
        return (
            _("The model is learning {word}: step **{step} of {total}**, {seconds} s so far.").format(
                word=word, step=state.step, total=state.total_steps, seconds=number(state.seconds, digits=0)
            )
            + " "
            + ngettext(
                "The class's set has {count} drawing.", "The class's set has {count} drawings.", state.drawings
            ).format(count=state.drawings)
        )
    if state.phase == TAUGHT:
        return _(
            "Your class's model was trained on {word} for {step} steps ({seconds} s). Its pictures below show what "
            "it made of the word."
        ).format(
            word=quoted(state.taught_word or state.word), step=state.step, seconds=number(state.seconds, digits=0)
        ) + (
            " "
            + _(
                "That is fewer than the {steps} steps the recipe was measured with: its pictures may not look like "
                "the drawings yet."
            ).format(steps=DEFAULT_STEPS)
            if state.step < DEFAULT_STEPS
            else ""
        )
    if state.phase in (STOPPED, FAILED):
        return _settled_sentence(state, word, student)
    handed = (
        ngettext(
            "Nothing taught yet. The class has handed in {count} drawing, {yours} of them yours.",
            "Nothing taught yet. The class has handed in {count} drawings, {yours} of them yours.",
            state.drawings,
        )
        if student
        else ngettext(
            "Nothing taught yet. The class has handed in {count} drawing.",
            "Nothing taught yet. The class has handed in {count} drawings.",
            state.drawings,
        )
    ).format(count=state.drawings, yours=state.yours)
    need = _(
        "Teaching needs at least {least}; a student hands in at most {per_student}, the class at most {per_class}."
    ).format(least=MIN_DRAWINGS, per_student=PER_STUDENT, per_class=PER_CLASS)
    then = (
        _("When your teacher names the word and presses Teach, the training shows here.")
        if student
        else _("Name the word and press Teach: the training shows here, and on every student's page.")
    )
    return f"{handed} {need} {then}"
