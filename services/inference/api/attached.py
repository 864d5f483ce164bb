"""What both gRPC adapters share: the two rooms they call, once the model is loaded.

The Classroom decides who may ask for what; Together holds what a class shares
(present mode, quick checks, the gallery). The Classroom builds Together beside
itself (both need the catalog and the store); the adapters call each directly.
Until the model is loaded they answer ModelLoading; once the server is stopping, a new
picture is refused with `Stopping`.
"""

from __future__ import annotations

from google.rpc import code_pb2

from services.common.errors import UNREACHABLE_MESSAGE
from services.common.i18n import Sentence
from services.inference.classroom.classroom import Classroom
from services.inference.refusals import ModelLoading, Refusal
from services.inference.together.together import Together


class Stopping(Refusal):
    """A new picture asked of a server that is stopping: UNAVAILABLE, so the client asks another replica."""

    code = code_pb2.UNAVAILABLE

    def __init__(self) -> None:
        super().__init__(Sentence(UNREACHABLE_MESSAGE))


class Attached:
    """An adapter that answers UNAVAILABLE (the model is loading) until `attach` gives it the Classroom."""

    def __init__(self) -> None:
        self.classroom: Classroom | None = None
        self.stopping = False  # the server stops: new work goes to another replica (`stop_taking_work`)

    def attach(self, classroom: Classroom) -> None:
        self.classroom = classroom

    def stop_taking_work(self) -> None:
        """From now on a new picture is refused (UNAVAILABLE): the server drains what it has begun."""
        self.stopping = True

    def ready(self) -> Classroom:
        """The Classroom, or the refusal that says the model is still loading."""
        if self.classroom is None:
            raise ModelLoading()
        return self.classroom

    def together(self) -> Together:
        """The class's shared room (present mode, quick checks, gallery), or the model-loading refusal."""
        return self.ready().together
