"""The generated gRPC API, imported in one place (run `make proto` to generate it)."""

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator

try:
    from diffusion_classroom.v1 import diffusion_service_pb2 as pb
    from diffusion_classroom.v1 import diffusion_service_pb2_grpc as pb_grpc
    from diffusion_classroom.v1 import trajectory_store_pb2 as store_pb
except ImportError as error:  # pragma: no cover - only without generated stubs
    raise ImportError(
        "The gRPC stubs are missing: run `make proto` (they are generated from proto/, not committed)."
    ) from error

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["DiffusionService"].full_name
TEACHER_SERVICE_NAME = pb.DESCRIPTOR.services_by_name["TeacherService"].full_name

# Request metadata, named once for the service and its clients.
AUTH_METADATA = "authorization"  # every call but health: the class's API token
STUDENT_METADATA = "x-student-id"  # who asks (one generation at a time, rate limits)
NAME_METADATA = "x-student-name-bin"  # what the teacher sees; -bin: any characters, as UTF-8
LESSON_METADATA = "x-classroom-lesson"  # the catalog entry a Generate call opens
CLASS_METADATA = "x-classroom-class-bin"  # the class a front end serves (per-class queue share); UTF-8
TEACHER_METADATA = "x-teacher-code"  # every TeacherService call: the class's teacher code
ADDRESS_METADATA = "x-classroom-address"  # the student's browser address, as the front end sees it
RESUME_METADATA = "x-classroom-resume-bin"  # a StreamStatus.resume_ticket: the same request again, not charged

# Machine-readable reasons the service attaches to some errors (a google.rpc.ErrorInfo
# detail in this domain), so clients act on a reason, never on the wording of a sentence.
ERROR_DOMAIN = "diffusion-classroom"
MODEL_LOADING = "MODEL_LOADING"  # UNAVAILABLE: the model is still loading; retry later
# JoinClass: this session no longer holds its name (the teacher removed it, or it signed in again elsewhere).
SIGNED_OUT = "SIGNED_OUT"


def bearer(token: str | None) -> tuple[tuple[str, str], ...]:
    """The metadata a client sends with every call (none when no token is set)."""
    return ((AUTH_METADATA, f"Bearer {token}"),) if token else ()


def unbatch(responses: Iterable[pb.GenerateResponse]) -> Iterator[pb.GenerateResponse]:
    """The events of a Generate stream one at a time, with EventBatch messages opened."""
    for response in responses:
        if response.WhichOneof("event") == "batch":
            yield from response.batch.events
        else:
            yield response


async def aunbatch(responses: AsyncIterable[pb.GenerateResponse]) -> AsyncIterator[pb.GenerateResponse]:
    """`unbatch` for grpc.aio streams."""
    async for response in responses:
        if response.WhichOneof("event") == "batch":
            for event in response.batch.events:
                yield event
        else:
            yield response


__all__ = [
    "ADDRESS_METADATA",
    "AUTH_METADATA",
    "CLASS_METADATA",
    "ERROR_DOMAIN",
    "LESSON_METADATA",
    "MODEL_LOADING",
    "NAME_METADATA",
    "RESUME_METADATA",
    "SERVICE_NAME",
    "SIGNED_OUT",
    "STUDENT_METADATA",
    "TEACHER_METADATA",
    "TEACHER_SERVICE_NAME",
    "aunbatch",
    "bearer",
    "pb",
    "pb_grpc",
    "store_pb",
    "unbatch",
]
