"""The Classroom's sentences to a student: each a `Sentence`, which its client writes in the reader's language."""

from __future__ import annotations

from services.common.i18n import N_, Sentence
from services.common.include_mask import Probe

STUDENT_REMOVED = Sentence(N_("Your teacher removed your name from the class, so this picture was stopped."))
NO_NAME = Sentence(N_("Please type a name to sign in with."))
BAD_SESSION = Sentence(N_("The session id is missing, too long, or has control characters."))
BAD_BROWSER = Sentence(N_("The browser id is too long or has control characters."))

# Each text field's two sentences (too long; hidden characters): a whole sentence per field, for the catalogs.
TEXT_SENTENCES: dict[str, tuple[str, str]] = {
    "prompt": (
        N_("The prompt is {length} characters long; the limit is {limit}. Please shorten it."),
        N_("The prompt has invisible or control characters ({characters}). Please type it again without them."),
    ),
    "negative_prompt": (
        N_("The negative prompt is {length} characters long; the limit is {limit}. Please shorten it."),
        N_(
            "The negative prompt has invisible or control characters ({characters}). Please type it again without them."
        ),
    ),
    "branch.prompt": (
        N_("The branch's prompt is {length} characters long; the limit is {limit}. Please shorten it."),
        N_(
            "The branch's prompt has invisible or control characters ({characters}). Please type it again without them."
        ),
    ),
    "branch.negative_prompt": (
        N_("The branch's negative prompt is {length} characters long; the limit is {limit}. Please shorten it."),
        N_(
            "The branch's negative prompt has invisible or control characters ({characters}). "
            "Please type it again without them."
        ),
    ),
}

# A size out of bounds, per side: (within the limits' sentence, too big's, which says why).
SIZE_SENTENCES: dict[str, tuple[str, str]] = {
    "width": (
        N_(
            "The width must be a multiple of {multiple} between {smallest} and {largest} pixels; you asked for {width}."
        ),
        N_(
            "The width must be a multiple of {multiple} between {smallest} and {largest} pixels: this model learned "
            "to paint {native}-pixel pictures, and much bigger ones come out as broken patterns; you asked for {width}."
        ),
    ),
    "height": (
        N_(
            "The height must be a multiple of {multiple} between {smallest} and {largest} pixels; "
            "you asked for {height}."
        ),
        N_(
            "The height must be a multiple of {multiple} between {smallest} and {largest} pixels: this model learned "
            "to paint {native}-pixel pictures, and much bigger ones come out as broken patterns; "
            "you asked for {height}."
        ),
    ),
}

# One request's work above the ceiling (`_check_work`): the refusal, then each way out as a whole sentence of its own.
TOO_MUCH_WORK = N_(
    "This picture is too much work for one request: it would take as long as {price} standard pictures "
    "({standard_steps} steps at {native} x {native} pixels), and one request may take at most {ceiling}."
)
FEWER_STEPS = N_("It fits if you use at most {most_steps} steps at this size.")
SMALLER = N_("It fits if you make it at most {side} x {side} pixels at {steps} steps.")
# The costly probes a request added beyond the model's default ones, by which it added.
LEAVE_OUT: dict[frozenset[str], str] = {
    frozenset({Probe.CROSS_ATTENTION}): N_("It is less work if you leave out the attention maps."),
    frozenset({Probe.DECODED_X0_PREVIEW}): N_("It is less work if you leave out the decoded picture at every step."),
    frozenset({Probe.CROSS_ATTENTION, Probe.DECODED_X0_PREVIEW}): N_(
        "It is less work if you leave out the attention maps and the decoded picture at every step."
    ),
}
