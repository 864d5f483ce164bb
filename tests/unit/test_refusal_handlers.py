"""Handlers registered through `answering_refusals`: a Refusal raised anywhere ends the call with its status.

The gRPC context is a fake that records the status it was aborted with and raises,
as grpc.aio's does; the integration tests make the same refusals over a real server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from services.common.api import pb
from services.inference.api.diffusion_service import DiffusionService
from services.inference.refusals import QueueFull, RequestError, answering_refusals


class Aborted(Exception):
    pass


class FakeContext:
    def __init__(self) -> None:
        self.statuses: list[grpc.Status] = []

    async def abort_with_status(self, status: grpc.Status) -> None:
        self.statuses.append(status)
        raise Aborted


def run(coroutine):
    return asyncio.run(coroutine)


def test_a_unary_handler_answers_or_is_refused_with_the_refusals_sentence_and_code():
    @answering_refusals
    async def handler(request: str, context: FakeContext) -> str:
        if request == "bad":
            raise RequestError([("prompt", "Type a prompt first.")])
        return request.upper()

    context = FakeContext()
    assert run(handler("fine", context)) == "FINE" and context.statuses == []
    with pytest.raises(Aborted):
        run(handler("bad", context))
    (status,) = context.statuses
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "Type a prompt first." in status.details


def test_a_stream_sends_what_it_had_then_ends_with_the_refusal_raised_midway():
    @answering_refusals
    async def handler(request: int, context: FakeContext) -> AsyncIterator[int]:
        for number in range(request):
            yield number
        raise QueueFull(waiting=12, retry_after_s=90)

    async def read(context: FakeContext) -> list[int]:
        got = []
        with pytest.raises(Aborted):
            async for number in handler(3, context):
                got.append(number)
        return got

    context = FakeContext()
    assert run(read(context)) == [0, 1, 2]
    (status,) = context.statuses
    assert status.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert status.details.startswith("The class queue is full right now (12 pictures are waiting).")


def test_other_errors_pass_through_untouched():
    @answering_refusals
    async def handler(request: str, context: FakeContext) -> str:
        raise KeyError(request)

    context = FakeContext()
    with pytest.raises(KeyError):
        run(handler("x", context))
    assert context.statuses == []


class NoClassroom:
    """A classroom that fails any test reaching it: a stopping service asks nothing of it."""

    def __getattr__(self, name: str):
        raise AssertionError(f"a stopping service asked its classroom for {name}")


def test_a_stopping_service_refuses_a_new_picture_so_the_client_asks_another_replica():
    service = DiffusionService()
    service.attach(NoClassroom())  # type: ignore[arg-type]
    service.stop_taking_work()
    context = FakeContext()

    async def first_event():
        generate = answering_refusals(service.Generate)  # as `register.add_service` serves it
        return await anext(generate(pb.GenerateRequest(prompt="a drained boat"), context))

    with pytest.raises(Aborted):
        run(first_event())
    (status,) = context.statuses
    assert status.code == grpc.StatusCode.UNAVAILABLE  # the front end's client sends it again, elsewhere
    assert "cannot be reached right now" in status.details
