"""Naming and packing what the service keeps in Redis: every key, and the checksummed stored trajectory.

Shared by the inference service (its cache) and the precompute job (lesson
pack export and import), so both agree on every byte.
"""

from __future__ import annotations

import hashlib
import hmac
from enum import StrEnum

from services.common.api import pb, store_pb
from services.common.include_mask import ON_REQUEST_PROBES

# Bump when what a trajectory holds changes: old entries are then dropped and
# recomputed instead of streamed. 2: signed with the cache secret (HMAC-SHA256).
FORMAT_VERSION = 2
KEY_PREFIX = "classroom"


class Namespace(StrEnum):
    LESSON = "lesson"  # curated lesson trajectories: no TTL, never evicted
    AD_HOC = "adhoc"  # students' own requests: TTL, evictable (volatile-lru)


class CorruptTrajectory(ValueError):
    """A stored trajectory that fails its checks: drop it and compute again."""


def canonical_request(request: pb.GenerateRequest) -> pb.GenerateRequest:
    """The request as it identifies a trajectory: every field, and of the include mask only the on-request paths."""
    canonical = pb.GenerateRequest()
    canonical.CopyFrom(request)
    canonical.ClearField("include")
    on_request = sorted(ON_REQUEST_PROBES.intersection(request.include.paths))
    if on_request:
        canonical.include.paths.extend(on_request)
    return canonical


def trajectory_id(request: pb.GenerateRequest, model_id: str, revision: str) -> str:
    """A digest of the canonical request, the model, its revision and the format version."""
    digest = hashlib.sha256()
    for part in (f"v{FORMAT_VERSION}", model_id, revision):
        digest.update(part.encode() + b"\0")
    digest.update(canonical_request(request).SerializeToString(deterministic=True))
    return digest.hexdigest()[:32]


def redis_key(namespace: Namespace, trajectory: str) -> str:
    return f"{KEY_PREFIX}:v{FORMAT_VERSION}:{namespace}:{trajectory}"


def rate_limit_key(student: str) -> str:
    """The Redis key of a student's token bucket (beside the trajectories, under the same prefix)."""
    return f"{KEY_PREFIX}:v{FORMAT_VERSION}:ratelimit:{student}"


def mac(secret: bytes, payload: bytes) -> bytes:
    """The server's signature (HMAC-SHA256 with its cache secret): of stored trajectories, and of relayed events."""
    return hmac.new(secret, payload, hashlib.sha256).digest()


def pack(record: store_pb.TrajectoryRecord, secret: bytes) -> bytes:
    """The stored form: versioned, and signed with the server's cache secret."""
    payload = record.SerializeToString(deterministic=True)
    stored = store_pb.StoredTrajectory(format_version=FORMAT_VERSION, payload=payload, hmac_sha256=mac(secret, payload))
    return stored.SerializeToString()


def unpack(data: bytes, secret: bytes | None) -> store_pb.TrajectoryRecord:
    """Check and open a stored trajectory; raise CorruptTrajectory if anything is off.

    With `secret`, the signature must be this server's. Without (a lesson pack from
    another server, about to be signed anew), only the contents are checked.
    """
    try:
        stored = store_pb.StoredTrajectory.FromString(data)
    except Exception as error:
        raise CorruptTrajectory(f"unreadable: {error}") from error
    if stored.format_version != FORMAT_VERSION:
        raise CorruptTrajectory(f"format {stored.format_version}, expected {FORMAT_VERSION}")
    if secret is not None and not hmac.compare_digest(mac(secret, stored.payload), stored.hmac_sha256):
        raise CorruptTrajectory("not signed with this server's cache secret")
    try:
        record = store_pb.TrajectoryRecord.FromString(stored.payload)
    except Exception as error:
        raise CorruptTrajectory(f"unreadable payload: {error}") from error
    check_record(record)
    return record


def check_record(record: store_pb.TrajectoryRecord) -> None:
    """A whole trajectory of the request it claims: header, one frame per step in order, final image."""
    kinds = [event.WhichOneof("event") for event in record.events]
    if not kinds or kinds[0] != "header" or kinds[-1] != "final" or set(kinds[1:-1]) != {"frame"}:
        raise CorruptTrajectory("incomplete: not header, frames, final")
    header = record.events[0].header
    if canonical_request(header.request) != canonical_request(record.request):
        raise CorruptTrajectory("the header describes another request")
    frames = [event.frame for event in record.events[1:-1]]
    if header.total_steps != len(frames) or [f.step_index for f in frames] != list(range(len(frames))):
        raise CorruptTrajectory(f"{len(frames)} frames for {header.total_steps} steps")
    steps = record.request.num_inference_steps
    if steps and not steps <= header.total_steps <= steps + 1:  # PNDM visits one timestep twice
        raise CorruptTrajectory(f"{header.total_steps} steps for a {steps}-step request")


def record_id(record: store_pb.TrajectoryRecord) -> str:
    return trajectory_id(record.request, record.model_id, record.model_revision)
