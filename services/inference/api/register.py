"""Registering a service of the API: every handler reads its own request bytes and answers refusals by their status."""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator

import grpc
from google.protobuf.message import DecodeError, Message

from services.common.api import pb
from services.common.i18n import N_, Sentence
from services.inference.refusals import Handler, RequestError, answering_refusals

# Every legal request is a few kilobytes (prompts are at most `max_prompt_chars`, 1,000 by default);
# anything larger is refused with a sentence. gRPC itself cuts messages above RECEIVE_LIMIT (the
# server's max receive size), without one: a limit so high only a broken client reaches it.
MAX_REQUEST_BYTES = 256 * 2**10
RECEIVE_LIMIT = 64 * 2**20
UNREADABLE = Sentence(
    N_("The image server could not read this request (it is not a valid message). Reload the page and try again.")
)


def read_request(message_type: type[Message], data: bytes) -> Message:
    """The request in `data`, or a RequestError with a sentence when it is too large or not a message."""
    if len(data) > MAX_REQUEST_BYTES:
        size = len(data) / 2**20
        too_large = N_(
            "This request is too large ({size} MB; a request may be at most {limit} KB). Make the prompt shorter."
        )
        raise RequestError([("request", Sentence(too_large, size=f"{size:.1f}", limit=MAX_REQUEST_BYTES // 2**10))])
    try:
        return message_type.FromString(data)
    except DecodeError:
        raise RequestError([("request", UNREADABLE)]) from None  # the parser's words mean nothing to a student


def _reading(handler: Handler, message_type: type[Message]) -> Handler:
    """The handler, taking the request's bytes and reading them first (`read_request`)."""
    if inspect.isasyncgenfunction(handler):

        @functools.wraps(handler)
        async def streaming(data: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[object]:
            async for message in handler(read_request(message_type, data), context):  # type: ignore[union-attr]
                yield message

        return streaming

    @functools.wraps(handler)
    async def unary(data: bytes, context: grpc.aio.ServicerContext) -> object:
        return await handler(read_request(message_type, data), context)  # type: ignore[misc]

    return unary


def _serialize(message: Message | bytes) -> bytes:
    return message if isinstance(message, bytes) else message.SerializeToString()


def add_service(servicer: object, server: grpc.aio.Server, service: str = "DiffusionService") -> None:
    """Register a service of the API (by its name in the proto) as the generated helper would, with three differences.

    A Refusal raised anywhere in a handler ends the call with its status
    (`answering_refusals`), so no handler catches them itself. Requests are read
    by the handler, not by gRPC (no request deserializer), so unreadable or
    oversized bytes are a RequestError like any other, not UNKNOWN with a
    traceback in the log. And handlers may send bytes: Generate's messages are
    serialized once per trajectory and include mask, not once per reader, so a
    class replaying the same cached lesson costs copying, not encoding.
    """
    described = pb.DESCRIPTOR.services_by_name[service]
    handlers = {}
    for method in described.methods:
        make = grpc.unary_stream_rpc_method_handler if method.server_streaming else grpc.unary_unary_rpc_method_handler
        handler = _reading(getattr(servicer, method.name), getattr(pb, method.input_type.name))
        handlers[method.name] = make(answering_refusals(handler), response_serializer=_serialize)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(described.full_name, handlers),))
