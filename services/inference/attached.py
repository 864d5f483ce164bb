"""What both gRPC adapters share: the Classroom they serve, once the model is loaded."""

from __future__ import annotations

import grpc

from services.inference.classroom import Classroom
from services.inference.refusals import ModelLoading, refuse


class Attached:
    """An adapter that answers UNAVAILABLE (the model is loading) until `attach` gives it the Classroom."""

    def __init__(self) -> None:
        self.classroom: Classroom | None = None

    def attach(self, classroom: Classroom) -> None:
        self.classroom = classroom

    async def ready(self, context: grpc.aio.ServicerContext) -> Classroom:
        if self.classroom is None:
            await refuse(context, ModelLoading())
        return self.classroom
