"""A gRPC server that does nothing but stream: the floor under the service's first frames, in the same run.

`python -m tests.bench.floor_server PORT` serves one server-streaming method,
FLOOR_METHOD. The request is the size of the first message, in decimal digits; the
server sends that many bytes at once, then one more small message a second later
(a replay holding its bulk), and ends. No model, no cache, no protobuf: what 200
such streams cost is what Python gRPC itself costs on the machine.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import grpc

FLOOR_METHOD = "/floor.Floor/Stream"


def _same(data: bytes) -> bytes:
    return data


async def _stream(request: bytes, _context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    yield bytes(int(request or b"1"))
    await asyncio.sleep(1.0)
    yield b"."


async def serve(port: int) -> None:
    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "floor.Floor", {"Stream": grpc.unary_stream_rpc_method_handler(_stream, _same, _same)}
    )
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
