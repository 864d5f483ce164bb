"""Every way the classroom says no, in one place: the student's sentence and how gRPC carries it.

"Why was I refused?" is answered here. Each refusal is an exception with the sentence a student reads, the gRPC
status code, and the details a client may act on (when to try again, which field was wrong, why). Each sentence
is a `Sentence` (its template marked with `N_`, and its arguments): the ErrorInfo's metadata carries the templates
(`template`, `template.1`, ...) and the arguments, so the client writes it in the reader's language
(`student_error`). Every gRPC handler is registered through `answering_refusals`: a handler just raises one.
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
from services.common.i18n import N_, Sentence

BLOCKED_MESSAGE = N_("This prompt can't be used in class. Please try a different one.")
STUDENT_BUSY_MESSAGE = N_("You already have a picture being made. Wait for it to finish (or stop it), then try again.")
LOADING_MESSAGE = N_("The model is still loading. Please try again in a minute.")
NO_TEACHER_CODE = N_("This server has no teacher code set (CLASSROOM_TEACHER_CODE), so the teacher's page is off.")
WRONG_TEACHER_CODE = N_("The teacher code is missing or wrong.")
TEMPLATE = "template"  # the ErrorInfo metadata's key of the first template; the next are "template.1", ...


def templates_metadata(sentences: list[str]) -> dict[str, str]:
    """The templates and arguments of `sentences` as ErrorInfo metadata; {} unless every one is a `Sentence`."""
    metadata: dict[str, str] = {}
    for index, sentence in enumerate(sentences):
        if not isinstance(sentence, Sentence) or any(metadata.get(k, v) != v for k, v in sentence.args.items()):
            return {}  # written another way, or two arguments of one name: the English alone
        metadata |= sentence.args
        metadata[f"{TEMPLATE}.{index}" if index else TEMPLATE] = sentence.template
    return metadata


def sentences_of(error: BaseException) -> list[str]:
    """What a student reads of `error`: a Refusal's sentences, an exception's one `Sentence`, else its English."""
    if isinstance(error, Refusal):
        return list(error.sentences)
    if error.args and isinstance(error.args[0], Sentence):
        return [error.args[0]]
    return [str(error) or type(error).__name__]


class Refusal(Exception):
    """A request the classroom will not serve."""

    code: ClassVar[int] = code_pb2.INTERNAL
    reason: ClassVar[str] = ""  # an ErrorInfo reason clients may act on, when there is one

    def __init__(self, sentence: str, retry_after_s: float | None = None) -> None:
        super().__init__(sentence)
        self.sentence = sentence
        self.retry_after_s = retry_after_s
        self.sentences: list[str] = [sentence]  # the sentences it is made of, in order

    def details(self) -> list[Message]:
        found: list[Message] = []
        if self.retry_after_s is not None:
            retry = error_details_pb2.RetryInfo()
            retry.retry_delay.FromSeconds(max(1, math.ceil(self.retry_after_s)))
            found.append(retry)
        metadata = templates_metadata(self.sentences)
        if self.reason or metadata:
            found.append(error_details_pb2.ErrorInfo(reason=self.reason, domain=ERROR_DOMAIN, metadata=metadata))
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
        super().__init__(Sentence(LOADING_MESSAGE))


class RequestError(Refusal, ValueError):
    """A request that cannot be run; each violation is (field, sentence for the student)."""

    code = code_pb2.INVALID_ARGUMENT

    def __init__(self, violations: list[tuple[str, str]]) -> None:
        super().__init__(" ".join(sentence for _, sentence in violations))
        self.violations = violations
        self.sentences = [sentence for _, sentence in violations]

    def details(self) -> list[Message]:
        violations = [
            error_details_pb2.BadRequest.FieldViolation(field=name, description=sentence)
            for name, sentence in self.violations
        ]
        return [error_details_pb2.BadRequest(field_violations=violations), *super().details()]


class BlockedPrompt(RequestError):
    """The prompt has a word or phrase from the class's blocklist."""

    def __init__(self) -> None:
        super().__init__([("prompt", Sentence(BLOCKED_MESSAGE))])


class StudentBusy(Refusal):
    """The student already has a generation computing or waiting."""

    code = code_pb2.RESOURCE_EXHAUSTED

    def __init__(self) -> None:
        super().__init__(Sentence(STUDENT_BUSY_MESSAGE))


class AddressBusy(Refusal):
    """One browser address already holds as many generations as one machine may."""

    code = code_pb2.RESOURCE_EXHAUSTED

    def __init__(self, held: int) -> None:
        super().__init__(Sentence(N_(
            "This computer's network address already has {held} pictures being made or waiting, as many as one "
            "address may. Wait for one to finish, then try again. If your whole class reaches the server through "
            "one address, tell your teacher: CLASSROOM_MAX_PER_ADDRESS must be 0."
        ), held=held))  # fmt: skip


_CLASS_FULL = (  # by waiting == 1
    N_("Your class already has {waiting} pictures waiting, as many as one class may."),
    N_("Your class already has 1 picture waiting, as many as one class may."),
)
_QUEUE_FULL = (
    N_("The class queue is full right now ({waiting} pictures are waiting)."),
    N_("The class queue is full right now (1 picture is waiting)."),
)


class QueueFull(Refusal):
    """The queue, or the asking class's share of it (`classroom` set), is full."""

    code = code_pb2.RESOURCE_EXHAUSTED

    def __init__(self, waiting: int, retry_after_s: float, classroom: str | None = None) -> None:
        full = _CLASS_FULL if classroom is not None else _QUEUE_FULL
        sentences = _later(max(1, round(retry_after_s / 60)), Sentence(full[waiting == 1], waiting=waiting))
        super().__init__(" ".join(sentences), retry_after_s)
        self.waiting, self.classroom, self.sentences = waiting, classroom, sentences


def _later(minutes: int, first: Sentence) -> list[str]:
    return [first, Sentence(N_("Please try again in about {minutes} minute(s)."), minutes=minutes)]


class WorkFull(QueueFull):
    """Nothing waits, but the pictures running have as much work left as the server takes on (`max_queue_work`)."""

    def __init__(self, pictures: float, retry_after_s: float) -> None:
        busy = N_("The server is busy with large pictures right now (about {pictures} standard pictures of work left).")
        sentences = _later(max(1, round(retry_after_s / 60)), Sentence(busy, pictures=max(1, round(pictures))))
        Refusal.__init__(self, " ".join(sentences), retry_after_s)
        self.waiting, self.classroom, self.sentences = 0, None, sentences


class RateLimited(Refusal):
    """The student has used up their generations for now."""

    code = code_pb2.RESOURCE_EXHAUSTED

    def __init__(self, retry_after_s: float) -> None:
        seconds = max(1, math.ceil(retry_after_s))
        later = N_("Please try again in 1 second.") if seconds == 1 else N_("Please try again in {seconds} seconds.")
        fast = Sentence(N_("You are making pictures faster than the class allows."))
        sentences = [fast, Sentence(later, seconds=seconds)]
        super().__init__(" ".join(sentences), retry_after_s)
        self.sentences = sentences


class TeacherOnly(Refusal):
    """A teacher's call without the right teacher code (or on a server with none)."""

    code = code_pb2.PERMISSION_DENIED

    def __init__(self, sentence: str) -> None:  # NO_TEACHER_CODE or WRONG_TEACHER_CODE
        super().__init__(Sentence(sentence))


class NameTaken(Refusal):
    """Someone on another computer is signed in to the class with this name."""

    code = code_pb2.ALREADY_EXISTS

    def __init__(self, name: str) -> None:
        super().__init__(Sentence(N_(
            "Someone in this class is already signed in as {name} on another computer or browser. "
            "Please choose another name (if it is you, close that tab and wait a minute, then sign in again)."
        ), name=repr(name)))  # fmt: skip


class TooManyNames(Refusal):
    """One browser address already holds as many names as one computer may."""

    code = code_pb2.RESOURCE_EXHAUSTED

    def __init__(self, held: int) -> None:
        super().__init__(Sentence(N_(
            "This computer's network address is already signed in to the class under {held} names, "
            "as many as one address may. Close one of those tabs, wait a minute, then try again. If your whole "
            "class reaches the server through one address, tell your teacher: CLASSROOM_MAX_PER_ADDRESS must be 0."
        ), held=held))  # fmt: skip


class NameRemoved(Refusal):
    """The teacher removed this name from the class."""

    code = code_pb2.PERMISSION_DENIED
    reason = SIGNED_OUT

    def __init__(self, name: str) -> None:
        removed = N_("Your teacher removed the name {name} from the class. Ask your teacher about it.")
        super().__init__(Sentence(removed, name=repr(name)))


class BrowserRemoved(Refusal):
    """The teacher removed a name this browser held: the browser may not sign in under any name."""

    code = code_pb2.PERMISSION_DENIED
    reason = SIGNED_OUT

    def __init__(self) -> None:
        super().__init__(Sentence(N_(
            "Your teacher removed you from the class on this browser, so it cannot sign in under another name. "
            "Ask your teacher to let you back in."
        )))  # fmt: skip


class BlockedName(RequestError):
    """The display name has a word or phrase from the class's blocklist."""

    def __init__(self) -> None:
        super().__init__([("name", Sentence(N_("This name can't be used in class. Please choose another one.")))])


class SignedInElsewhere(Refusal):
    """A newer sign-in with the same name, from the same computer, took the name over."""

    code = code_pb2.FAILED_PRECONDITION
    reason = SIGNED_OUT

    def __init__(self, name: str) -> None:
        signed_out = N_("You signed in as {name} in another tab or window, so this one was signed out.")
        super().__init__(Sentence(signed_out, name=repr(name)))


# A failed generation's sentences (diffusion/jobs.py's MODEL_FAILURE and QUEUE_CLEARED, in the same English).
MODEL_FAILURE = Sentence(N_("Something went wrong inside the model while generating. Please try again."))
QUEUE_CLEARED = Sentence(N_("Your teacher cleared the queue, so this picture was not made. You can ask for it again."))


class TrajectoryFailed(Refusal):
    """The generation behind a stream failed, or was stopped on purpose; its sentences are for the student."""

    def __init__(self, sentences: list[str], aborted: bool = False) -> None:
        super().__init__(" ".join(sentences))
        self.sentences, self.aborted = list(sentences), aborted  # each sent as its template, as the trajectory kept it

    @property
    def code(self) -> int:  # type: ignore[override]
        return code_pb2.ABORTED if self.aborted else code_pb2.INTERNAL


class NotShareable(Refusal):
    """A picture the gallery will not take: not one this service computed and kept, or flagged, or blocked."""

    code = code_pb2.NOT_FOUND

    def __init__(self, sentence: str = "") -> None:
        gone = N_("This picture can't be shared: it is not kept on the image server any more. Make it again.")
        super().__init__(sentence or Sentence(gone))


class GalleryFull(Refusal):
    """The class gallery, or one student's share of it, is full."""

    code = code_pb2.RESOURCE_EXHAUSTED

    def __init__(self, limit: int, per_student: bool = False) -> None:
        mine = N_("You have already shared {limit} pictures, as many as one student may.")
        super().__init__(Sentence(mine if per_student else N_(
            "The class gallery is full ({limit} pictures). Ask your teacher to clear it."
        ), limit=limit))  # fmt: skip


class GalleryUnavailable(Refusal):
    """The gallery lives in Redis, which cannot be reached."""

    code = code_pb2.FAILED_PRECONDITION

    def __init__(self) -> None:
        super().__init__(
            Sentence(N_("The class gallery is not available right now (its store cannot be reached). Try later."))
        )


class NotInGallery(Refusal):
    code = code_pb2.NOT_FOUND

    def __init__(self) -> None:
        super().__init__(Sentence(N_("That picture is not in the class gallery (any more).")))


class NoQuickCheck(Refusal):
    """An answer to a question that is not open (closed, revealed, or replaced)."""

    code = code_pb2.FAILED_PRECONDITION

    def __init__(self) -> None:
        super().__init__(Sentence(N_("This question is closed, so your answer was not counted.")))


class AlreadyAnswered(Refusal):
    code = code_pb2.ALREADY_EXISTS

    def __init__(self) -> None:
        super().__init__(Sentence(N_("You have already answered this question: one answer each.")))


class LimitsUnavailable(Refusal):
    """The class's picture limits live in Redis, which cannot be reached: new pictures wait until it is back."""

    code = code_pb2.FAILED_PRECONDITION

    def __init__(self, retry_after_s: float = 30.0) -> None:
        super().__init__(Sentence(N_(
            "New pictures are paused for a moment: the server cannot check the class's picture limits right now. "
            "Lessons still open. Try again in a minute."
        )), retry_after_s)  # fmt: skip


class ClassStateUnavailable(Refusal):
    """The class's shared state (present mode, quick checks, the roster) lives in Redis, which cannot be reached."""

    code = code_pb2.FAILED_PRECONDITION  # as LimitsUnavailable: the service is up, one store is not

    def __init__(self, retry_after_s: float = 10.0) -> None:
        super().__init__(Sentence(N_(
            "The class's shared screen and questions are not available for a moment (their store cannot be "
            "reached). Lessons still open. Try again in a minute."
        )), retry_after_s)  # fmt: skip
