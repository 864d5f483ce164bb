"""Failures as sentences a student can act on: the service's own sentence where it wrote one, else ours.

The client (`client.py`) turns every failed call into a `StudentError` through
`student_error`; the pages show its message as it is. Our own sentences are
translated where they are made (`services.common.i18n`: the front end's catalogs).
The service's own sentences arrive in English, with the templates they were
written from and their arguments in the ErrorInfo's metadata
(`services.inference.refusals`): the client writes them again in the reader's language.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from services.common.api import ERROR_DOMAIN
from services.common.i18n import N_, _

# Also what a stopping server answers a new picture (the client asks another, or again, before a student reads it).
UNREACHABLE_MESSAGE = N_(
    "The image server cannot be reached right now. It may be starting up: wait a minute, then try again."
)

_MESSAGES = {
    grpc.StatusCode.UNAVAILABLE: UNREACHABLE_MESSAGE,
    grpc.StatusCode.RESOURCE_EXHAUSTED: N_("The class queue is full right now. Wait a minute, then try again."),
    grpc.StatusCode.CANCELLED: N_("The generation was stopped."),
    grpc.StatusCode.DEADLINE_EXCEEDED: N_("The image server took too long to answer. Try again in a moment."),
    grpc.StatusCode.UNAUTHENTICATED: N_("This page is not allowed to use the image server. Tell your teacher."),
}
# Codes whose status message the service writes for people to read.
_OWN_SENTENCES = (
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
)
_TEMPLATE = "template"  # the metadata's key of the service's first template (services.inference.refusals.TEMPLATE)
_FALLBACK = N_("Something went wrong on the image server. Try again; if it keeps happening, tell your teacher.")


class StudentError(Exception):
    """A failure explained in one sentence a student can act on."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason  # the service's ErrorInfo reason, when it gave one (e.g. MODEL_LOADING)


def error_info(error: grpc.RpcError) -> error_details_pb2.ErrorInfo | None:
    """The ErrorInfo the service attached to a failed call, if it did."""
    try:
        status = rpc_status.from_call(error)  # type: ignore[arg-type]
    except (ValueError, AttributeError):
        return None
    for detail in status.details if status is not None else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Is(info.DESCRIPTOR) and detail.Unpack(info) and info.domain == ERROR_DOMAIN:
            return info
    return None


def error_reason(error: grpc.RpcError) -> str:
    """The ErrorInfo reason the service attached to a failed call, or ""."""
    info = error_info(error)
    return info.reason if info is not None else ""


def rewritten(metadata: Mapping[str, str], english: str) -> str:
    """The service's sentence in the reader's language, from its templates and arguments; else `english`.

    The metadata holds the templates as "template", "template.1", ... and every other key is an argument.
    """
    templates = [metadata[key] for key in _template_keys(metadata)]
    arguments = {key: value for key, value in metadata.items() if key.partition(".")[0] != _TEMPLATE}
    try:
        return " ".join(_(template).format(**arguments) for template in templates) if templates else english
    except (KeyError, IndexError, ValueError, AttributeError):  # a template this client reads otherwise
        return english


def _template_keys(metadata: Mapping[str, str]) -> list[str]:
    keys = []
    while (key := f"{_TEMPLATE}.{len(keys)}" if keys else _TEMPLATE) in metadata:
        keys.append(key)
    return keys


def student_error(error: grpc.RpcError) -> StudentError:
    """The sentence to show for a failed call; the service's own sentence where it wrote one for students."""
    code = error.code()
    details = error.details() or ""
    info = error_info(error)
    reason = info.reason if info is not None else ""
    if (code in _OWN_SENTENCES or reason) and details:  # a reason: the service wrote the sentence for students
        return StudentError(rewritten(info.metadata, details) if info is not None else details, code, reason)
    return StudentError(_(_MESSAGES.get(code, _FALLBACK)), code, reason)
