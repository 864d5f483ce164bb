"""Fuzzed request bytes at every call of both services: a clear status with a sentence, never UNKNOWN or INTERNAL.

A front end with a bug (or anyone holding the service token) may send bytes that
are not a message, a message mutated on the way, or one far larger than any legal
request. Each gets INVALID_ARGUMENT (or the refusal its content earns) with a
sentence, and the service logs no traceback for it.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.protobuf.message import Message

from services.common.api import CLASS_METADATA, NAME_METADATA, STUDENT_METADATA, TEACHER_METADATA, pb
from tests.frontend.conftest import LESSON_CATALOG
from tests.support.servers import running_server

TEACHER_CODE = "owl-42"
MESSAGES = 10_000
FORBIDDEN = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}

# A legal example of each request (fields set, so that mutations hit real fields); other calls take an empty one.
EXAMPLES: dict[str, Message] = {
    "Tokenize": pb.TokenizeRequest(prompt="a red circle"),
    "EncodePrompt": pb.EncodePromptRequest(prompt="a red circle"),
    "Generate": pb.GenerateRequest(
        prompt="a red circle",
        negative_prompt="blurry",
        seed=3,
        num_inference_steps=2,
        width=64,
        height=64,
        guidance_scale=7.5,
        scheduler="ddim",
        include=field_mask_pb2.FieldMask(paths=["latent", "predicted_x0"]),
        branch=pb.Branch(at_step=1, prompt="a blue square"),
    ),
    "ListLessons": pb.ListLessonsRequest(collection="prompt-pairs"),
    "JoinClass": pb.JoinClassRequest(name="Sam", session="tab-1", address="10.0.0.5"),
    "ShareToGallery": pb.ShareToGalleryRequest(trajectory_key="ab" * 32),
    "AnswerQuickCheck": pb.AnswerQuickCheckRequest(question_id="guidance-zero", choice=1),
    "GetClassroom": pb.GetClassroomRequest(include_prompts=True),
    "SetPaused": pb.SetPausedRequest(paused=False),
    "RemoveStudent": pb.RemoveStudentRequest(class_name="7B", name="Sam", let_back=True),
    "SetPresent": pb.SetPresentRequest(class_name="7B", leading=True, example_id="x", step=1, lesson="change-one-word"),
    "ReviewSubmission": pb.ReviewSubmissionRequest(class_name="7B", item_id="a" * 20, status=2),
    "SetGalleryApproval": pb.SetGalleryApprovalRequest(class_name="7B", approval_required=True),
    "AskQuickCheck": pb.AskQuickCheckRequest(class_name="7B", question="Which?", choices=["a", "b"], answer=1),
}


def calls() -> list[tuple[str, str, bool, Message]]:
    """(path, method, server-streaming, legal example) for every method of both services."""
    found = []
    for service in pb.DESCRIPTOR.services_by_name.values():
        for method in service.methods:
            example = EXAMPLES.get(method.name) or getattr(pb, method.input_type.name)()
            assert example.DESCRIPTOR is method.input_type, method.name
            found.append((f"/{service.full_name}/{method.name}", method.name, method.server_streaming, example))
    return found


TEXTS = ["", "a red circle", "x" * 300, "\u202e\x00\x1b[2J", "\U0001f1f3\U0001f1fa", "../../etc/passwd", "%s%n{0}",
         "ab" * 32, "guidance-zero", "prompt-pairs", "7B", "Sam"]  # fmt: skip
NUMBERS = [0, 1, -1, 2, 3, 64, 2**31 - 1, -(2**31), 2**63 - 1, -(2**63)]
FLOATS = [0.0, -1.0, 7.5, 1e38, -1e38, float("nan"), float("inf"), float("-inf")]


def with_odd_values(rng: random.Random, message: Message) -> Message:
    """The message with its fields (nested ones too) set to odd but well-formed values."""
    odd = type(message)()
    odd.CopyFrom(message)
    for field in odd.DESCRIPTOR.fields:
        if rng.random() < 0.4:
            continue
        if field.message_type is not None:
            if not field.is_repeated:
                getattr(odd, field.name).CopyFrom(with_odd_values(rng, getattr(odd, field.name)))
            continue
        if field.type == field.TYPE_STRING:
            value = rng.choice(TEXTS)
        elif field.type == field.TYPE_BOOL:
            value = rng.random() < 0.5
        elif field.type in (field.TYPE_FLOAT, field.TYPE_DOUBLE):
            value = rng.choice(FLOATS)
        elif field.enum_type is not None:
            value = rng.choice([0, 1, 2, 3, 99, -5])
        elif field.type in (field.TYPE_INT32, field.TYPE_SINT32, field.TYPE_SFIXED32):
            value = rng.choice([n for n in NUMBERS if -(2**31) <= n < 2**31])
        elif field.type in (field.TYPE_UINT32, field.TYPE_FIXED32):
            value = rng.choice([0, 1, 2**32 - 1])
        elif field.type in (field.TYPE_UINT64, field.TYPE_FIXED64):
            value = rng.choice([0, 1, 2**64 - 1])
        elif field.type == field.TYPE_BYTES:
            value = rng.randbytes(rng.randrange(40))
        else:
            value = rng.choice(NUMBERS)
        if field.is_repeated:
            getattr(odd, field.name)[:] = [value] * rng.randrange(4)
        else:
            setattr(odd, field.name, value)
    return odd


def mutated(rng: random.Random, legal: Message) -> bytes:
    """Bytes near a legal message, or none like it: odd values, flipped, cut, spliced, repeated or random."""
    kind = rng.randrange(8)
    if kind < 3:  # well-formed, with odd values: these reach the handlers
        return with_odd_values(rng, legal).SerializeToString()
    data = bytearray(legal.SerializeToString())
    if kind == 3 or not data:
        return rng.randbytes(rng.randrange(64))
    if kind == 4:  # a few bytes flipped
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    if kind == 5:  # cut short
        return bytes(data[: rng.randrange(len(data))])
    if kind == 6:  # random bytes spliced in, or a field with a huge length or a wrong wire type
        at = rng.randrange(len(data) + 1)
        return bytes(data[:at] + rng.randbytes(rng.randint(1, 12)) + data[at:])
    return bytes(data) * rng.randint(2, 4)  # the same fields again (strings repeated)


def fuzzed(seed: int, count: int) -> Iterator[tuple[str, str, bool, bytes, tuple]]:
    rng = random.Random(seed)
    every = calls()
    for i in range(count):
        path, name, streaming, example = every[i % len(every)]
        metadata: tuple = ((STUDENT_METADATA, f"fuzz-{i % 7}"), (NAME_METADATA, f"F{i % 7}".encode()),
                           (CLASS_METADATA, b"7B"))  # fmt: skip
        if path.startswith("/diffusion_classroom.v1.TeacherService/") and rng.random() < 0.8:
            metadata += ((TEACHER_METADATA, TEACHER_CODE),)  # mostly past the teacher code, into the handlers
        yield path, name, streaming, mutated(rng, example), metadata


def status_of(channel: grpc.Channel, path: str, streaming: bool, data: bytes, metadata: tuple) -> tuple:
    """(code, details) of one call with these bytes; a stream is read to its first message, then left."""
    try:
        if streaming:
            call = channel.unary_stream(path)(data, metadata=metadata, timeout=30)
            try:
                next(iter(call), None)
            finally:
                call.cancel()
            code = call.code()
            return (grpc.StatusCode.OK if code == grpc.StatusCode.CANCELLED else code), call.details()
        channel.unary_unary(path)(data, metadata=metadata, timeout=30)
        return grpc.StatusCode.OK, ""
    except grpc.RpcError as error:
        return error.code(), error.details()


@pytest.fixture(scope="module")
def fuzz_channel(settings):
    update = {"teacher_code": TEACHER_CODE, "catalog": LESSON_CATALOG, "max_steps": 2, "max_queue": 4}
    with running_server(settings.model_copy(update=update)) as server, grpc.insecure_channel(server.address) as channel:
        yield channel


def test_fuzzed_bytes_get_a_clear_status_at_every_call(fuzz_channel, caplog):
    channel = fuzz_channel
    caplog.set_level(logging.ERROR)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda call: (call[1], *status_of(channel, call[0], call[2], call[3], call[4])),
                                fuzzed(seed=24, count=MESSAGES)))  # fmt: skip
    codes = Counter(code for _, code, _ in results)
    bad = [(name, code, details[:120]) for name, code, details in results if code in FORBIDDEN]
    assert not bad, (len(bad), bad[:10], codes)
    # Every refusal carries a sentence for a person, not a parser's message.
    unclear = {(name, details) for name, code, details in results if code != grpc.StatusCode.OK and (
        not details or "Traceback" in details or "Exception" in details)}  # fmt: skip
    assert not unclear, sorted(unclear)[:10]
    assert codes[grpc.StatusCode.INVALID_ARGUMENT] > MESSAGES / 4, codes  # most mutations are not messages
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert not tracebacks, tracebacks[0].getMessage()


@pytest.mark.parametrize("megabytes", [5, 40])
def test_an_oversized_message_gets_a_sentence(fuzz_channel, megabytes):
    channel = fuzz_channel
    prompt = "a red circle " * (megabytes * 2**20 // 13)
    for path, message in (
        ("/diffusion_classroom.v1.DiffusionService/Tokenize", pb.TokenizeRequest(prompt=prompt)),
        ("/diffusion_classroom.v1.DiffusionService/Generate", pb.GenerateRequest(prompt=prompt)),
    ):
        code, details = status_of(channel, path, path.endswith("Generate"), message.SerializeToString(), ())
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)
        assert "too large" in details and "MB" in details, details
