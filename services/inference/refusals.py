"""Every way the classroom says no, in one place: the student's sentence and how gRPC carries it.

"Why was I refused?" is answered here. Each refusal is an exception with the
sentence a student reads, the gRPC status code, and the machine-readable
details a client may act on (when to try again, which field was wrong, why).
Every gRPC handler is registered through `answering_refusals`, so a handler just
raises one and the call ends with its status.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, ClassVar, NoReturn

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from services.common.api import ERROR_DOMAIN, MODEL_LOADING, SIGNED_OUT

BLOCKED_MESSAGE = "This prompt can't be used in class. Please try a different one."
STUDENT_BUSY_MESSAGE = "You already have a picture being made. Wait for it to finish (or stop it), then try again."
LOADING_MESSAGE = "The model is still loading. Please try again in a minute."
NO_TEACHER_CODE = "This server has no teacher code set (CLASSROOM_TEACHER_CODE), so the teacher's page is off."
WRONG_TEACHER_CODE = "The teacher code is missing or wrong."


class Refusal(Exception):
    """A request the classroom will not serve."""

    code: ClassVar[int] = code_pb2.INTERNAL
    reason: ClassVar[str] = ""  # an ErrorInfo reason clients may act on, when there is one

    def __init__(self, sentence: str, retry_after_s: float | None = None) -> None:
        super().__init__(sentence)
        self.sentence = sentence
        self.retry_after_s = retry_after_s

    def details(self) -> list[Message]:
        found: list[Message] = []
        if self.retry_after_s is not None:
            retry = error_details_pb2.RetryInfo()
            retry.retry_delay.FromSeconds(max(1, math.ceil(self.retry_after_s)))
            found.append(retry)
        if self.reason:
            found.append(error_details_pb2.ErrorInfo(reason=self.reason, domain=ERROR_DOMAIN))
        return found

    def status(self) -> grpc.Status:
        """The refusal as a gRPC status, details packed, for `context.abort_with_status`."""
        packed = []
        for detail in self.details():
            message = any_pb2.Any()
            message.Pack(detail)
            packed.append(message)
        return rpc_status.to_status(status_pb2.Status(code=self.code, message=self.sentence, details=packed))


async def refuse(context: grpc.aio.ServicerContext, refusal: Refusal) -> NoReturn:
    """End a gRPC call with the refusal's status: its sentence, code and details."""
    await context.abort_with_status(refusal.status())
    raise AssertionError("unreachable")  # abort_with_status raises


Handler = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any] | AsyncIterator[Any]]


def answering_refusals(handler: Handler) -> Handler:
    """A gRPC handler (unary or server-streaming) whose Refusal, raised anywhere in it, ends the call with its status.

    A handler registered so (`add_service`) just raises: no try/except of its own.
    """
    if inspect.isasyncgenfunction(handler):

        @functools.wraps(handler)
        async def streaming(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            try:
                async for message in handler(request, context):  # type: ignore[union-attr]
                    yield message
            except Refusal as refusal:
                await refuse(context, refusal)

        return streaming

    @functools.wraps(handler)
    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await handler(request, context)  # type: ignore[misc]
        except Refusal as refusal:
            await refuse(context, refusal)

    return unary


class ModelLoading(Refusal):
    code = code_pb2.UNAVAILABLE
    reason = MODEL_LOADING

    def __init__(self) -> None:
        super().__init__(LOADING_MESSAGE)


class RequestError(Refusal, ValueError):
    """A request that cannot be run; each violation is (field, sentence for the student)."""

    code = code_pb2.INVALID_ARGUMENT

    def __init__(self, violations: list[tuple[str, str]]) -> None:
        super().__init__(" ".join(sentence for _, sentence in violations))
        self.violations = violations

    def details(self) -> list[Message]:
        violations = [
            error_details_pb2.BadRequest.FieldViolation(field=name, description=sentence)
            for name, sentence in self.violations
        ]
        return [error_details_pb2.BadRequest(field_violations=violations), *super().details()]


class BlockedPrompt(RequestError):
    """The prompt has a word or phrase from the class's blocklist."""

    def __init__(self) -> None:
        super().__init__([("prompt", BLOCKED_MESSAGE)])


class StudentBusy(Refusal):
    """The student already has a generation computing or waiting."""

    code = code_pb2.RESOURCE_EXHAUSTED

    def __init__(self) -> None:
        super().__init__(STUDENT_BUSY_MESSAGE)


class AddressBusy(Refusal):
    """One browser address already holds as many generations as one machine may."""

    code = code_pb2.RESOURCE_EXHAUSTED

    def __init__(self, held: int) -> None:
        super().__init__(
            f"This computer's network address already has {held} pictures being made or waiting, as many as one "
            "address may. Wait for one to finish, then try again. If your whole class reaches the server through "
            "one address, tell your teacher: CLASSROOM_MAX_PER_ADDRESS must be 0."
        )


class QueueFull(Refusal):
    """The queue, or the asking class's share of it (`classroom` set), is full."""

    code = code_pb2.RESOURCE_EXHAUSTED

    def __init__(self, waiting: int, retry_after_s: float, classroom: str | None = None) -> None:
        minutes = max(1, round(retry_after_s / 60))
        pictures = "1 picture" if waiting == 1 else f"{waiting} pictures"
        sentence = (
            f"Your class already has {pictures} waiting, as many as one class may. "
            if classroom is not None
            else f"The class queue is full right now ({pictures} {'is' if waiting == 1 else 'are'} waiting). "
        ) + f"Please try again in about {minutes} minute(s)."
        super().__init__(sentence, retry_after_s)
        self.waiting, self.classroom = waiting, classroom


class WorkFull(QueueFull):
    """Nothing waits, but the pictures running have as much work left as the server takes on (`max_queue_work`)."""

    def __init__(self, pictures: float, retry_after_s: float) -> None:
        minutes = max(1, round(retry_after_s / 60))
        Refusal.__init__(
            self,
            f"The server is busy with large pictures right now (about {max(1, round(pictures))} standard pictures "
            f"of work left). Please try again in about {minutes} minute(s).",
            retry_after_s,
        )
        self.waiting, self.classroom = 0, None


class RateLimited(Refusal):
    """The student has used up their generations for now."""

    code = code_pb2.RESOURCE_EXHAUSTED

    def __init__(self, retry_after_s: float) -> None:
        seconds = max(1, math.ceil(retry_after_s))
        super().__init__(
            "You are making pictures faster than the class allows. "
            f"Please try again in {seconds} second{'' if seconds == 1 else 's'}.",
            retry_after_s,
        )


class TeacherOnly(Refusal):
    """A teacher's call without the right teacher code (or on a server with none)."""

    code = code_pb2.PERMISSION_DENIED


class NameTaken(Refusal):
    """Someone on another computer is signed in to the class with this name."""

    code = code_pb2.ALREADY_EXISTS

    def __init__(self, name: str) -> None:
        super().__init__(
            f"Someone in this class is already signed in as {name!r} on another computer or browser. "
            "Please choose another name (if it is you, close that tab and wait a minute, then sign in again)."
        )


class TooManyNames(Refusal):
    """One browser address already holds as many names as one computer may."""

    code = code_pb2.RESOURCE_EXHAUSTED

    def __init__(self, held: int) -> None:
        super().__init__(
            f"This computer's network address is already signed in to the class under {held} names, "
            "as many as one address may. Close one of those tabs, wait a minute, then try again. If your whole "
            "class reaches the server through one address, tell your teacher: CLASSROOM_MAX_PER_ADDRESS must be 0."
        )


class NameRemoved(Refusal):
    """The teacher removed this name from the class."""

    code = code_pb2.PERMISSION_DENIED
    reason = SIGNED_OUT

    def __init__(self, name: str) -> None:
        super().__init__(f"Your teacher removed the name {name!r} from the class. Ask your teacher about it.")


class BrowserRemoved(Refusal):
    """The teacher removed a name this browser held: the browser may not sign in under any name."""

    code = code_pb2.PERMISSION_DENIED
    reason = SIGNED_OUT

    def __init__(self) -> None:
        super().__init__(
            "Your teacher removed you from the class on this browser, so it cannot sign in under another name. "
            "Ask your teacher to let you back in."
        )


class BlockedName(RequestError):
    """The display name has a word or phrase from the class's blocklist."""

    def __init__(self) -> None:
        super().__init__([("name", "This name can't be used in class. Please choose another one.")])


class SignedInElsewhere(Refusal):
    """A newer sign-in with the same name, from the same computer, took the name over."""

    code = code_pb2.FAILED_PRECONDITION
    reason = SIGNED_OUT

    def __init__(self, name: str) -> None:
        super().__init__(f"You signed in as {name!r} in another tab or window, so this one was signed out.")


class TrajectoryFailed(Refusal):
    """The generation behind a stream failed, or was stopped on purpose; the sentence is for the student."""

    def __init__(self, sentence: str, aborted: bool = False) -> None:
        super().__init__(sentence)
        self.aborted = aborted

    @property
    def code(self) -> int:  # type: ignore[override]
        return code_pb2.ABORTED if self.aborted else code_pb2.INTERNAL


# -- teaching together: the gallery and quick checks ---------------------------


class NotShareable(Refusal):
    """A picture the gallery will not take: not one this service computed and kept, or flagged, or blocked."""

    code = code_pb2.NOT_FOUND

    def __init__(self, sentence: str = "") -> None:
        super().__init__(
            sentence or "This picture can't be shared: it is not kept on the image server any more. Make it again."
        )


class GalleryFull(Refusal):
    """The class gallery, or one student's share of it, is full."""

    code = code_pb2.RESOURCE_EXHAUSTED

    def __init__(self, limit: int, per_student: bool = False) -> None:
        super().__init__(
            f"You have already shared {limit} pictures, as many as one student may."
            if per_student
            else f"The class gallery is full ({limit} pictures). Ask your teacher to clear it."
        )


class GalleryUnavailable(Refusal):
    """The gallery lives in Redis, which cannot be reached."""

    code = code_pb2.FAILED_PRECONDITION

    def __init__(self) -> None:
        super().__init__("The class gallery is not available right now (its store cannot be reached). Try later.")


class NotInGallery(Refusal):
    code = code_pb2.NOT_FOUND

    def __init__(self) -> None:
        super().__init__("That picture is not in the class gallery (any more).")


class NoQuickCheck(Refusal):
    """An answer to a question that is not open (closed, revealed, or replaced)."""

    code = code_pb2.FAILED_PRECONDITION

    def __init__(self) -> None:
        super().__init__("This question is closed, so your answer was not counted.")


class AlreadyAnswered(Refusal):
    code = code_pb2.ALREADY_EXISTS

    def __init__(self) -> None:
        super().__init__("You have already answered this question: one answer each.")


class LimitsUnavailable(Refusal):
    """The class's picture limits live in Redis, which cannot be reached: new pictures wait until it is back."""

    code = code_pb2.FAILED_PRECONDITION

    def __init__(self, retry_after_s: float = 30.0) -> None:
        super().__init__(
            "New pictures are paused for a moment: the server cannot check the class's picture limits right now. "
            "Lessons still open. Try again in a minute.",
            retry_after_s,
        )


class ClassStateUnavailable(Refusal):
    """The class's shared state (present mode, quick checks, the roster) lives in Redis, which cannot be reached."""

    code = code_pb2.FAILED_PRECONDITION  # as LimitsUnavailable: the service is up, one store is not

    def __init__(self, retry_after_s: float = 10.0) -> None:
        super().__init__(
            "The class's shared screen and questions are not available for a moment (their store cannot be "
            "reached). Lessons still open. Try again in a minute.",
            retry_after_s,
        )
