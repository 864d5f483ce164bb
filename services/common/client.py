"""The one client of the inference service, shared by the front end and the precompute job.

Typed calls over one channel; failures turned into sentences a student can act
on; a Generate stream that reconnects when the service restarts mid-stream. No
Streamlit here: the front end wraps it (`frontend/client.py`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import Field, model_validator

from services.common.api import (
    ADDRESS_METADATA,
    CLASS_METADATA,
    LESSON_METADATA,
    MODEL_LOADING,
    NAME_METADATA,
    RESUME_METADATA,
    SERVICE_NAME,
    STUDENT_METADATA,
    TEACHER_METADATA,
    bearer,
    pb,
    pb_grpc,
    unbatch,
)
from services.common.channels import TlsClientSettings, open_channel
from services.common.errors import StudentError as StudentError  # re-exported: callers catch it from the client
from services.common.errors import error_reason, student_error
from services.common.secrets import read_secret

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

# Pauses before sending a stream again after the service went away mid-stream (about 30 s in all:
# long enough for a restart that finds the model in its cache).
RECONNECT_DELAYS_S = (1.0, 2.0, 4.0, 8.0, 15.0)
# A restarted service is reached within seconds (gRPC's own reconnect backoff grows to 2 minutes).
MAX_RECONNECT_BACKOFF_MS = 5_000


class ClientSettings(TlsClientSettings):
    """Where the inference service is and how to talk to it (CLASSROOM_ environment variables)."""

    # A host:port, or dns:///name:port to spread over several inference servers.
    inference_addr: str = Field("localhost:50051", description="The inference service's gRPC address.")
    api_token: str | None = Field(None, description="The inference service's API token, if it has one.")
    api_token_file: Path | None = Field(None, description="A file holding the API token (compose's secrets volume).")
    # Unary calls (model info, tokens, lessons) give up after this long.
    request_timeout_s: float = Field(30.0, description="Seconds before a quick call to the service gives up.")
    # A Generate stream gives up after this long: longer than the slowest lesson (a 150-step
    # 1024 px picture queued behind a class on a CPU), short enough that nobody waits forever.
    stream_timeout_s: float = Field(1800.0, description="Seconds before a Generate stream gives up.")
    # After a restart the service answers "still loading" until its model is in: a stream waits that long.
    loading_wait_s: float = Field(900.0, description="Seconds a stream waits for a restarted service's model.")

    @model_validator(mode="after")
    def _token_from_file(self) -> ClientSettings:
        self.api_token = read_secret(self.api_token, self.api_token_file)
        return self


class ClassroomClient:
    """The calls the lessons and the precompute job make, typed, over one shared channel."""

    def __init__(self, settings: ClientSettings, class_name: str = "") -> None:
        self.settings = settings
        self.class_name = class_name  # sent with every generation, for per-class queue shares
        self.channel = open_channel(
            settings.inference_addr,
            settings,
            options=[
                ("grpc.service_config", _SERVICE_CONFIG),
                ("grpc.enable_retries", 1),
                ("grpc.max_receive_message_length", 64 * 2**20),
                ("grpc.max_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS),
            ],
        )
        self.stub = pb_grpc.DiffusionServiceStub(self.channel)
        self.teacher_stub = pb_grpc.TeacherServiceStub(self.channel)
        self._auth = bearer(settings.api_token)

    def close(self) -> None:
        self.channel.close()

    def _call(
        self, method: grpc.UnaryUnaryMultiCallable, message: object, teacher_code: str | None = None, student: str = ""
    ) -> object:
        metadata = self._auth if teacher_code is None else (*self._auth, (TEACHER_METADATA, teacher_code))
        if student:
            metadata = (*metadata, (STUDENT_METADATA, student))
        try:
            return method(message, timeout=self.settings.request_timeout_s, metadata=metadata)
        except grpc.RpcError as error:
            raise student_error(error) from error

    def wait_until_serving(self, timeout_s: float, poll_s: float = 2.0) -> bool:
        """Poll the standard health service until the model is loaded (a first start downloads it)."""
        health = health_pb2_grpc.HealthStub(self.channel)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                reply = health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=5)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return True
            except grpc.RpcError:
                pass
            time.sleep(poll_s)
        return False

    def model_info(self) -> pb.GetModelInfoResponse:
        return self._call(self.stub.GetModelInfo, pb.GetModelInfoRequest())

    def tokenize(self, prompt: str, student: str = "") -> pb.TokenizeResponse:
        """The prompt's tokens; `student` names whose allowance of text calls it uses."""
        return self._class_call(self.stub.Tokenize, pb.TokenizeRequest(prompt=prompt), student)

    def encode(self, prompt: str, student: str = "") -> pb.PromptEncoding:
        return self._class_call(self.stub.EncodePrompt, pb.EncodePromptRequest(prompt=prompt), student).encoding

    def training_samples(
        self, offset: int = 0, count: int = 0, student: str = "", name: str = ""
    ) -> pb.TrainingSamplesResponse:
        """A page of the pictures the model learned from (lesson 9); `available` False with a sentence if not here."""
        request = pb.TrainingSamplesRequest(offset=offset, count=count)
        return self._class_call(self.stub.TrainingSamples, request, student, name)

    def nearest_training(
        self, trajectory_key: str, k: int = 0, student: str = "", name: str = ""
    ) -> pb.NearestTrainingResponse:
        """The training pictures nearest a finished picture of the service (by its stream's trajectory key)."""
        request = pb.NearestTrainingRequest(trajectory_key=trajectory_key, k=k)
        return self._class_call(self.stub.NearestTraining, request, student, name)

    # Teach it a new word (lesson 10): students hand in drawings, the teacher teaches.

    def submit_drawing(self, png: bytes, student: str, name: str = "") -> pb.SubmitDrawingResponse:
        return self._class_call(self.stub.SubmitDrawing, pb.SubmitDrawingRequest(png=png), student, name)

    def teaching(self, student: str = "", name: str = "") -> pb.TeachingState:
        """The class's new word: drawings in, the training's progress, or the word learned."""
        return self._class_call(self.stub.GetTeaching, pb.GetTeachingRequest(), student, name)

    def drawings(self, teacher_code: str) -> list[pb.ClassDrawing]:
        request = pb.ListDrawingsRequest(class_name=self.class_name)
        return list(self._call(self.teacher_stub.ListDrawings, request, teacher_code).drawings)

    def remove_drawing(self, teacher_code: str, drawing_id: str) -> bool:
        request = pb.RemoveDrawingRequest(class_name=self.class_name, drawing_id=drawing_id)
        return self._call(self.teacher_stub.RemoveDrawing, request, teacher_code).removed

    def teach_word(self, teacher_code: str, word: str, steps: int = 0) -> Iterator[pb.TeachingState]:
        """Start (or follow) the class's training; its progress until it ends. Leaving early does not stop it."""
        request = pb.TeachWordRequest(class_name=self.class_name, word=word, steps=steps)
        call = self.teacher_stub.TeachWord(request, metadata=(*self._auth, (TEACHER_METADATA, teacher_code)))
        try:
            yield from call
        except grpc.RpcError as error:
            raise student_error(error) from error
        finally:
            call.cancel()

    def stop_teaching(self, teacher_code: str) -> bool:
        request = pb.StopTeachingRequest(class_name=self.class_name)
        return self._call(self.teacher_stub.StopTeaching, request, teacher_code).stopped

    def reset_word(self, teacher_code: str, drawings_too: bool = False) -> bool:
        request = pb.ResetWordRequest(class_name=self.class_name, drawings_too=drawings_too)
        return self._call(self.teacher_stub.ResetWord, request, teacher_code).changed

    def join_class(self, name: str, session: str, address: str = "", browser: str = "") -> float:
        """Sign in to the class as `name` (or renew it); seconds within which to renew.

        `browser` is the browser's id from the front end's signed cookie: a session of the same
        browser takes the name over, any other is refused while the name is held.
        Raises StudentError: with reason SIGNED_OUT when this session no longer holds the name.
        """
        metadata = (*self._auth, (CLASS_METADATA, self.class_name.encode())) if self.class_name else self._auth
        request = pb.JoinClassRequest(name=name, session=session, address=address, browser=browser)
        try:
            reply = self.stub.JoinClass(request, timeout=self.settings.request_timeout_s, metadata=metadata)
        except grpc.RpcError as error:
            raise student_error(error) from error
        return reply.renew_within_seconds

    def lessons(self, collection: str = "") -> pb.ListLessonsResponse:
        return self._call(self.stub.ListLessons, pb.ListLessonsRequest(collection=collection))

    # The teacher's page: each call carries the teacher code.

    def classroom(self, teacher_code: str, include_prompts: bool = False) -> pb.GetClassroomResponse:
        return self._call(self.teacher_stub.GetClassroom, pb.GetClassroomRequest(include_prompts=include_prompts),
                          teacher_code)  # fmt: skip

    def set_paused(self, teacher_code: str, paused: bool) -> bool:
        return self._call(self.teacher_stub.SetPaused, pb.SetPausedRequest(paused=paused), teacher_code).paused

    def clear_queue(self, teacher_code: str) -> int:
        return self._call(self.teacher_stub.ClearQueue, pb.ClearQueueRequest(), teacher_code).cleared

    def remove_student(self, teacher_code: str, class_name: str, name: str, let_back: bool = False) -> bool:
        """Remove a name from its class (or let it back in); True if that changed anything."""
        request = pb.RemoveStudentRequest(name=name, class_name=class_name, let_back=let_back)
        return self._call(self.teacher_stub.RemoveStudent, request, teacher_code).changed

    def precompute_lessons(self, teacher_code: str) -> pb.PrecomputeProgress:
        return self._call(self.teacher_stub.PrecomputeLessons, pb.PrecomputeLessonsRequest(), teacher_code).progress

    # Teaching together: the class's shared state, its gallery and quick checks.

    def _in_class(self, student: str = "", name: str = "") -> tuple[tuple[str, str | bytes], ...]:
        """The metadata of a call made for this class (and, when given, a student of it)."""
        metadata: tuple[tuple[str, str | bytes], ...] = self._auth
        if self.class_name:
            metadata += ((CLASS_METADATA, self.class_name.encode()),)
        if student:
            metadata += ((STUDENT_METADATA, student),)
        if name:
            metadata += ((NAME_METADATA, name.encode()),)
        return metadata

    def _class_call(self, method: grpc.UnaryUnaryMultiCallable, message: object, student: str = "",
                    name: str = "") -> object:  # fmt: skip
        try:
            return method(message, timeout=self.settings.request_timeout_s, metadata=self._in_class(student, name))
        except grpc.RpcError as error:
            raise student_error(error) from error

    def watch_class(self) -> Iterator[pb.ClassState]:
        """The class's state (present mode, the open quick check) now and at every change; grpc.RpcError ends it."""
        call = self.stub.WatchClass(pb.WatchClassRequest(), metadata=self._in_class())
        try:
            yield from call
        finally:
            call.cancel()

    def class_state(self) -> pb.ClassState:
        return self._class_call(self.stub.GetClassState, pb.GetClassStateRequest())

    def share_to_gallery(self, trajectory_key: str, student: str, name: str = "") -> pb.GalleryItem:
        request = pb.ShareToGalleryRequest(trajectory_key=trajectory_key)
        return self._class_call(self.stub.ShareToGallery, request, student, name).item

    def gallery(self) -> list[pb.GalleryItem]:
        """The class gallery's approved pictures, newest first."""
        return list(self._class_call(self.stub.ListGallery, pb.ListGalleryRequest()).items)

    def class_map(self) -> pb.ClassMap:
        return self._class_call(self.stub.GetClassMap, pb.GetClassMapRequest())

    def answer_quick_check(self, question_id: str, choice: int, student: str, name: str = "") -> int:
        request = pb.AnswerQuickCheckRequest(question_id=question_id, choice=choice)
        return self._class_call(self.stub.AnswerQuickCheck, request, student, name).choice

    # The teacher leads this front end's class (each call carries the teacher code).

    def set_present(self, teacher_code: str, leading: bool, example_id: str = "", step: int = 0,
                    show_map: bool = False, lesson: str = "") -> pb.ClassState:  # fmt: skip
        request = pb.SetPresentRequest(class_name=self.class_name, leading=leading, example_id=example_id, step=step,
                                       show_map=show_map, lesson=lesson)  # fmt: skip
        return self._call(self.teacher_stub.SetPresent, request, teacher_code).state

    def set_class_language(self, teacher_code: str, language: str) -> pb.ClassState:
        """The class's default language (a code of services.common.i18n.LANGUAGES); the state as it now is."""
        request = pb.SetClassLanguageRequest(class_name=self.class_name, language=language)
        return self._call(self.teacher_stub.SetClassLanguage, request, teacher_code).state

    def submissions(self, teacher_code: str) -> pb.ListSubmissionsResponse:
        request = pb.ListSubmissionsRequest(class_name=self.class_name)
        return self._call(self.teacher_stub.ListSubmissions, request, teacher_code)

    def review_submission(self, teacher_code: str, item_id: str, approve: bool) -> pb.GalleryItem:
        status = pb.SUBMISSION_STATUS_APPROVED if approve else pb.SUBMISSION_STATUS_HIDDEN
        request = pb.ReviewSubmissionRequest(class_name=self.class_name, item_id=item_id, status=status)
        return self._call(self.teacher_stub.ReviewSubmission, request, teacher_code).item

    def set_gallery_approval(self, teacher_code: str, required: bool) -> bool:
        request = pb.SetGalleryApprovalRequest(class_name=self.class_name, approval_required=required)
        return self._call(self.teacher_stub.SetGalleryApproval, request, teacher_code).approval_required

    def clear_gallery(self, teacher_code: str) -> int:
        request = pb.ClearGalleryRequest(class_name=self.class_name)
        return self._call(self.teacher_stub.ClearGallery, request, teacher_code).cleared

    def submission_map(self, teacher_code: str) -> pb.ClassMap:
        request = pb.GetSubmissionMapRequest(class_name=self.class_name)
        return self._call(self.teacher_stub.GetSubmissionMap, request, teacher_code)

    def ask_quick_check(self, teacher_code: str, lesson_question_id: str = "", question: str = "",
                        choices: tuple[str, ...] = (), answer: int = 0) -> pb.QuickCheck:  # fmt: skip
        request = pb.AskQuickCheckRequest(class_name=self.class_name, lesson_question_id=lesson_question_id,
                                          question=question, choices=choices, answer=answer)  # fmt: skip
        return self._call(self.teacher_stub.AskQuickCheck, request, teacher_code).quick_check

    def quick_check(self, teacher_code: str) -> pb.QuickCheck | None:
        """The open quick check with its tally and answer, or None."""
        reply = self._call(self.teacher_stub.GetQuickCheck, pb.GetQuickCheckRequest(class_name=self.class_name),
                           teacher_code)  # fmt: skip
        return reply.quick_check if reply.HasField("quick_check") else None

    def reveal_quick_check(self, teacher_code: str) -> pb.QuickCheck:
        request = pb.RevealQuickCheckRequest(class_name=self.class_name)
        return self._call(self.teacher_stub.RevealQuickCheck, request, teacher_code).quick_check

    def close_quick_check(self, teacher_code: str) -> None:
        self._call(self.teacher_stub.CloseQuickCheck, pb.CloseQuickCheckRequest(class_name=self.class_name),
                   teacher_code)  # fmt: skip

    def generate(
        self,
        request: pb.GenerateRequest,
        student: str = "",
        *,
        name: str = "",
        lesson_entry: str = "",
        address: str = "",
        on_reconnect: Callable[[int, float], None] | None = None,
        on_call: Callable[[grpc.Call], None] | None = None,
    ) -> Iterator[pb.GenerateResponse]:
        """Stream a generation's events; closing the iterator early cancels it on the server.

        When the service goes away mid-stream (a restart, a lost connection), the request is
        sent again after a pause, RECONNECT_DELAYS_S one after another, telling
        `on_reconnect(attempt, pause)` first. The new stream starts over with its status
        (a cache hit when the work had finished, else computed again): readers start afresh there.
        `on_call` is told each call as it is sent, so another thread may cancel it (a Stop button).
        """
        metadata = self._auth
        if student:
            metadata += ((STUDENT_METADATA, student),)
        if name:
            metadata += ((NAME_METADATA, name.encode()),)
        if lesson_entry:
            metadata += ((LESSON_METADATA, lesson_entry),)
        if address:
            metadata += ((ADDRESS_METADATA, address),)
        if self.class_name:
            metadata += ((CLASS_METADATA, self.class_name.encode()),)
        # Sent again, it is the same request (the seed the service drew, if it drew one) with the
        # ticket the service gave for it, so the student is not charged twice.
        again = pb.GenerateRequest()
        again.CopyFrom(request)
        ticket = b""
        attempt = 0
        loading_since: float | None = None
        while True:
            if attempt:
                pause = RECONNECT_DELAYS_S[min(attempt, len(RECONNECT_DELAYS_S)) - 1]
                if on_reconnect is not None:
                    on_reconnect(attempt, pause)
                time.sleep(pause)
            sent = (*metadata, (RESUME_METADATA, ticket)) if ticket else metadata
            call = self.stub.Generate(again, metadata=sent, timeout=self.settings.stream_timeout_s)
            if on_call is not None:
                on_call(call)
            try:
                for response in unbatch(call):
                    kind = response.WhichOneof("event")
                    if kind == "status" and response.status.resume_ticket:
                        ticket = response.status.resume_ticket
                    elif kind == "header" and not again.HasField("seed"):
                        again.seed = response.header.request.seed
                    yield response
                return
            except grpc.RpcError as error:
                attempt += 1
                if error_reason(error) == MODEL_LOADING:
                    # A restarted service loading its model (minutes for SD 1.5 from a cold cache): keep waiting.
                    loading_since = loading_since or time.monotonic()
                    if time.monotonic() - loading_since < self.settings.loading_wait_s:
                        continue
                if error.code() != grpc.StatusCode.UNAVAILABLE or attempt > len(RECONNECT_DELAYS_S):
                    raise student_error(error) from error
            finally:
                call.cancel()  # a no-op once the stream has ended; stops the work if the reader left early
