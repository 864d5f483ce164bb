"""A thin typed client over the generated stubs, with errors turned into sentences for students."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import grpc
import streamlit as st

from frontend.settings import FrontendSettings
from services.common.api import (
    LESSON_METADATA,
    NAME_METADATA,
    SERVICE_NAME,
    STUDENT_METADATA,
    bearer,
    pb,
    pb_grpc,
    unbatch,
)
from services.common.channels import open_channel

# Quick calls are retried with backoff while the service restarts; a stream is
# retried only until its first message arrives (gRPC's own rule).
_SERVICE_CONFIG = json.dumps(
    {
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [
            {
                "name": [{"service": SERVICE_NAME}],
                "retryPolicy": {
                    "maxAttempts": 5,
                    "initialBackoff": "0.5s",
                    "maxBackoff": "4s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ],
    }
)

_MESSAGES = {
    grpc.StatusCode.UNAVAILABLE: "The image server cannot be reached right now. It may be starting up: "
    "wait a minute, then try again.",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "The class queue is full right now. Wait a minute, then try again.",
    grpc.StatusCode.CANCELLED: "The generation was stopped.",
    grpc.StatusCode.DEADLINE_EXCEEDED: "The image server took too long to answer. Try again in a moment.",
    grpc.StatusCode.UNAUTHENTICATED: "This page is not allowed to use the image server. Tell your teacher.",
}
_FALLBACK = "Something went wrong on the image server. Try again; if it keeps happening, tell your teacher."


class StudentError(Exception):
    """A failure explained in one sentence a student can act on."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.code = code


def student_error(error: grpc.RpcError) -> StudentError:
    """The sentence to show for a failed call; the service's own sentence where it wrote one for students."""
    code = error.code()
    details = error.details() or ""
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED) and details:
        return StudentError(details, code)
    if code == grpc.StatusCode.UNAVAILABLE and "still loading" in details:
        return StudentError(details, code)
    return StudentError(_MESSAGES.get(code, _FALLBACK), code)


class ClassroomClient:
    """The calls the lessons make, typed, over one shared channel."""

    def __init__(self, settings: FrontendSettings) -> None:
        self.settings = settings
        self.channel = open_channel(
            settings.inference_addr,
            settings,
            options=[
                ("grpc.service_config", _SERVICE_CONFIG),
                ("grpc.enable_retries", 1),
                ("grpc.max_receive_message_length", 64 * 2**20),
            ],
        )
        self.stub = pb_grpc.DiffusionServiceStub(self.channel)
        self._auth = bearer(settings.api_token)

    def _call(self, method: grpc.UnaryUnaryMultiCallable, message: object) -> object:
        try:
            return method(message, timeout=self.settings.request_timeout_s, metadata=self._auth)
        except grpc.RpcError as error:
            raise student_error(error) from error

    def model_info(self) -> pb.GetModelInfoResponse:
        return self._call(self.stub.GetModelInfo, pb.GetModelInfoRequest())

    def tokenize(self, prompt: str) -> pb.TokenizeResponse:
        return self._call(self.stub.Tokenize, pb.TokenizeRequest(prompt=prompt))

    def encode(self, prompt: str) -> pb.PromptEncoding:
        return self._call(self.stub.EncodePrompt, pb.EncodePromptRequest(prompt=prompt)).encoding

    def lessons(self, collection: str = "") -> pb.ListLessonsResponse:
        return self._call(self.stub.ListLessons, pb.ListLessonsRequest(collection=collection))

    def generate(
        self, request: pb.GenerateRequest, student: str, lesson_entry: str = ""
    ) -> Iterator[pb.GenerateResponse]:
        """Stream a generation; closing the iterator early cancels it on the server."""
        metadata = (*self._auth, (STUDENT_METADATA, student))
        if name := st.session_state.get("display_name"):
            metadata += ((NAME_METADATA, name.encode()),)
        if lesson_entry:
            metadata += ((LESSON_METADATA, lesson_entry),)
        call = self.stub.Generate(request, metadata=metadata)
        try:
            yield from unbatch(call)
        except grpc.RpcError as error:
            raise student_error(error) from error
        finally:
            call.cancel()  # a no-op once the stream has ended; stops the work if the reader left early


def student_id() -> str:
    """The id of this browser session: the service allows each student one generation at a time."""
    if "student_id" not in st.session_state:
        st.session_state.student_id = uuid.uuid4().hex
    return st.session_state.student_id


@st.cache_resource
def get_client() -> ClassroomClient:
    """The one client every student session shares (one channel, many streams)."""
    return ClassroomClient(FrontendSettings())
