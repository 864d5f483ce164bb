"""What both gRPC adapters share: the Classroom they serve, once the model is loaded."""

from __future__ import annotations

from services.inference.classroom.classroom import Classroom
from services.inference.refusals import ModelLoading


class Attached:
    """An adapter that answers UNAVAILABLE (the model is loading) until `attach` gives it the Classroom."""

    def __init__(self) -> None:
        self.classroom: Classroom | None = None

    def attach(self, classroom: Classroom) -> None:
        self.classroom = classroom

    def ready(self) -> Classroom:
        """The Classroom, or the refusal that says the model is still loading."""
        if self.classroom is None:
            raise ModelLoading()
        return self.classroom
