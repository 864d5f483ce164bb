"""A finished trajectory's stored bytes (`pack`'s), made from its events' own bytes, signed and staged as they come.

`RecordParts` is a trajectory's record as parts, packed off the event loop; `SignedSoFar`
signs each event as it is encoded, and hands its bytes to the trajectory's `Staging`
(staging.py) when the store stages it, so that storing it at the end reads and sends only
its last event (`RecordParts.staged`).
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from dataclasses import dataclass, field

from services.common.api import pb, store_pb
from services.common.trajectories import FORMAT_VERSION, trajectory_id
from services.inference.trajectories.frames import length_delimited_tag, varint
from services.inference.trajectories.staging import Stager, Staging

_EVENT_TAG = length_delimited_tag(store_pb.TrajectoryRecord.DESCRIPTOR.fields_by_name["events"])
_PAYLOAD_TAG = length_delimited_tag(store_pb.StoredTrajectory.DESCRIPTOR.fields_by_name["payload"])
# The stored value's bytes before its payload's length: the format's version and the payload's tag.
FIXED = store_pb.StoredTrajectory(format_version=FORMAT_VERSION).SerializeToString() + _PAYLOAD_TAG


def head_of(request: pb.GenerateRequest, model_id: str, revision: str) -> bytes:
    """A record's fields 1-3, as `pack` writes them before the events."""
    head = store_pb.TrajectoryRecord(request=request, model_id=model_id, model_revision=revision)
    return head.SerializeToString(deterministic=True)


def _event_parts(event: pb.GenerateResponse) -> tuple[bytes, bytes, bytes]:
    """One event as a record's field 4 element: its tag, its length and its bytes."""
    data = event.SerializeToString(deterministic=True)
    return _EVENT_TAG, varint(len(data)), data


class SignedSoFar:
    """A trajectory's signature (`pack`'s HMAC) over the events it has so far, made as each one comes.

    Signing a finished trajectory reads its megabytes at once, when a class's pictures all
    end together; signed event by event (on the frame encoders' threads, while the model
    works on the next step) only the picture is left to sign at the end (`RecordParts.packed`).
    Events are added in order by one thread at a time; `RecordParts.packed` reads a copy.
    Given a `stager`, each event's bytes also go to Redis as they are signed, in the same order (`staging`).
    """

    def __init__(
        self,
        secret: bytes,
        request: pb.GenerateRequest,
        model_id: str,
        revision: str,
        stager: Stager | None = None,
    ) -> None:
        self.secret = secret
        self.head = (request, model_id, revision)
        head = head_of(request, model_id, revision)
        self._signature = hmac.new(secret, head, digestmod=hashlib.sha256)
        self._events: list[pb.GenerateResponse] = []  # those signed, the very objects
        self._lock = threading.Lock()
        events = request.num_inference_steps + 2  # the header, each step, the picture
        self.staging = None if stager is None else Staging(stager, trajectory_id(*self.head), len(FIXED), head, events)

    def add(self, event: pb.GenerateResponse) -> None:
        parts = _event_parts(event)
        with self._lock:
            for part in parts:
                self._signature.update(part)
            self._events.append(event)
            if self.staging is not None:
                self.staging.add(b"".join(parts))

    def covering(
        self, secret: bytes, head: tuple[pb.GenerateRequest, str, str], events: tuple[pb.GenerateResponse, ...]
    ) -> tuple[int, hmac.HMAC] | None:
        """(how many of `events` it signed, a copy of its signature) when it signed their start; else None."""
        with self._lock:
            signed, signature = len(self._events), self._signature.copy()
            same = signed <= len(events) and all(a is b for a, b in zip(self._events, events, strict=False))
        if secret != self.secret or head != self.head or not same:
            return None
        return signed, signature


@dataclass(frozen=True)
class RecordParts:
    """A finished trajectory's record (`store_pb.TrajectoryRecord`) as its parts, to be stored off the event loop."""

    request: pb.GenerateRequest
    model_id: str
    revision: str
    events: tuple[pb.GenerateResponse, ...]
    lesson_entry: str = ""
    signed_so_far: SignedSoFar | None = field(default=None, compare=False)  # its first events, signed as they came

    def record(self) -> store_pb.TrajectoryRecord:
        return store_pb.TrajectoryRecord(
            request=self.request,
            model_id=self.model_id,
            model_revision=self.revision,
            events=self.events,
            lesson_entry_id=self.lesson_entry,
        )

    def trajectory_id(self) -> str:
        return trajectory_id(*self.head)

    @property
    def head(self) -> tuple[pb.GenerateRequest, str, str]:
        """What its record begins with: the request, the model and the model's revision."""
        return self.request, self.model_id, self.revision

    @property
    def staging(self) -> Staging | None:
        """Its staging while it can still be stored from it (not yet finished or given up)."""
        staging = None if self.signed_so_far is None else self.signed_so_far.staging
        return staging if staging is not None and not staging.finished and not staging.failed else None

    def _rest(self, secret: bytes) -> tuple[int, hmac.HMAC, list[bytes]]:
        """(n, the signature over the head and the first n events, the parts after them, up to the lesson entry).

        n is how many events `signed_so_far` signed (the same objects, under the same secret), else 0.
        """
        covered = None if self.signed_so_far is None else self.signed_so_far.covering(secret, self.head, self.events)
        if covered is None:
            covered = 0, hmac.new(secret, head_of(*self.head), digestmod=hashlib.sha256)
        signed, signature = covered
        rest = [part for event in self.events[signed:] for part in _event_parts(event)]
        rest.append(store_pb.TrajectoryRecord(lesson_entry_id=self.lesson_entry).SerializeToString())
        return signed, signature, rest

    def _end(self, signature: hmac.HMAC, unsigned: list[bytes]) -> bytes:
        for part in unsigned:
            signature.update(part)  # (the digest lets go of the interpreter's lock while it reads megabytes)
        return store_pb.StoredTrajectory(hmac_sha256=signature.digest()).SerializeToString()

    def packed(self, secret: bytes) -> bytes:
        """`pack(self.record(), secret)` to the byte, made from each event's own bytes.

        Protobuf writes a message's fields in number order and a repeated message as each
        element's bytes behind its tag and length, so the record is the bytes of its fields
        1-3, each event's, then field 5; they are signed as they come and joined once, inside
        the stored message's own fields. Never copying megabytes into new message objects,
        this costs a few milliseconds where `pack` costs 10 to 25
        (tests/unit/test_trajectory_store_packing.py). The events `signed_so_far` already
        signed are not read again for the signature: only the rest, usually the picture.
        """
        head = head_of(*self.head)
        signed, signature, rest = self._rest(secret)
        parts = [head] + [p for event in self.events[:signed] for p in _event_parts(event)] + rest
        end = self._end(signature, rest)
        return b"".join([FIXED, varint(sum(map(len, parts))), *parts, end])

    def staged(self, secret: bytes, key: str, ttl: int | None) -> bool:
        """Store it under `key` from its staged bytes (`Staging.finish`), reading only the events not staged.

        On the store's staging thread, after every staged write, when its staging can still serve
        (`staging`). False (nothing stored) when it has none, or the staging cannot give `packed`'s
        bytes: it is then written whole, and what was staged is deleted.
        """
        staging = None if self.signed_so_far is None else self.signed_so_far.staging
        if staging is None or staging.finished:
            return False  # (none, or stored from it already, or dropped)
        if not staging.failed:
            signed, signature, rest = self._rest(secret)
            if signed:
                end = self._end(signature, rest)
                head = head_of(*self.head)
                length = len(head) + staging.written + sum(map(len, rest))
                return staging.finish(key, FIXED + varint(length) + head, b"".join(rest) + end, signed, ttl)
        staging.drop()  # (on the staging thread, after its writes)
        return False
