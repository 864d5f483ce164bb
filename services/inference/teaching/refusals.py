"""What lesson 10's calls refuse, each with a sentence a student or teacher can act on."""

from __future__ import annotations

from google.rpc import code_pb2

from services.common.i18n import N_, Sentence
from services.inference.refusals import Refusal


class NotTeachable(Refusal):
    code = code_pb2.FAILED_PRECONDITION

    def __init__(self) -> None:
        super().__init__(
            Sentence(
                N_(
                    "This server's model can't be taught a new word here: lesson 10 needs the Shapes model, "
                    "small enough to train while the class watches."
                )
            )
        )


class DrawingsFull(Refusal):
    code = code_pb2.RESOURCE_EXHAUSTED


class TrainingNow(Refusal):
    code = code_pb2.FAILED_PRECONDITION

    def __init__(self) -> None:
        super().__init__(Sentence(N_("The class's model is learning its new word right now. Wait until it is done.")))
