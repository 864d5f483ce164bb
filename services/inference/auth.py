"""Service identity: every call but health carries the class's API token (`authorization: Bearer ...`)."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from services.common.api import AUTH_METADATA

UNAUTHENTICATED_MESSAGE = "This client is not allowed to use the image server: its API token is missing or wrong."
# Health checks come from container runtimes and load balancers, which hold no token.
_OPEN_PREFIX = "/grpc.health.v1.Health/"


async def _refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE)


_REFUSED = grpc.unary_unary_rpc_method_handler(_refuse)


class TokenInterceptor(grpc.aio.ServerInterceptor):
    """Refuses, with UNAUTHENTICATED, any call without the right bearer token (health excepted)."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        if handler_call_details.method.startswith(_OPEN_PREFIX):
            return await continuation(handler_call_details)
        sent = dict(handler_call_details.invocation_metadata or ()).get(AUTH_METADATA, "")
        if hmac.compare_digest(str(sent).encode(), self._expected):
            return await continuation(handler_call_details)
        return _REFUSED
