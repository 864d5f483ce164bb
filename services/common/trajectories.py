"""Naming and packing what the service keeps in Redis: every key, and the checksummed stored trajectory.

Shared by the inference service (its cache) and the precompute job (lesson
pack export and import), so both agree on every byte.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum

from services.common.api import pb, store_pb

# Bump when what a trajectory holds changes: old entries are then dropped and
# recomputed instead of streamed.
FORMAT_VERSION = 1
KEY_PREFIX = "classroom"


class Namespace(StrEnum):
    LESSON = "lesson"  # curated lesson trajectories: no TTL, never evicted
    AD_HOC = "adhoc"  # students' own requests: TTL, evictable (volatile-lru)


class CorruptTrajectory(ValueError):
    """A stored trajectory that fails its checks: drop it and compute again."""


def canonical_request(request: pb.GenerateRequest) -> pb.GenerateRequest:
    """The request as it identifies a trajectory: every field but the include mask."""
    canonical = pb.GenerateRequest()
    canonical.CopyFrom(request)
    canonical.ClearField("include")
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


def pack(record: store_pb.TrajectoryRecord) -> bytes:
    payload = record.SerializeToString(deterministic=True)
    stored = store_pb.StoredTrajectory(
        format_version=FORMAT_VERSION, sha256=hashlib.sha256(payload).digest(), payload=payload
    )
    return stored.SerializeToString()


def unpack(data: bytes) -> store_pb.TrajectoryRecord:
    """Check and open a stored trajectory; raise CorruptTrajectory if anything is off."""
    try:
        stored = store_pb.StoredTrajectory.FromString(data)
    except Exception as error:
        raise CorruptTrajectory(f"unreadable: {error}") from error
    if stored.format_version != FORMAT_VERSION:
        raise CorruptTrajectory(f"format {stored.format_version}, expected {FORMAT_VERSION}")
    if hashlib.sha256(stored.payload).digest() != stored.sha256:
        raise CorruptTrajectory("checksum mismatch")
    try:
        record = store_pb.TrajectoryRecord.FromString(stored.payload)
    except Exception as error:
        raise CorruptTrajectory(f"unreadable payload: {error}") from error
    kinds = [event.WhichOneof("event") for event in record.events]
    if not kinds or kinds[0] != "header" or kinds[-1] != "final" or set(kinds[1:-1]) != {"frame"}:
        raise CorruptTrajectory("incomplete: not header, frames, final")
    return record


def record_id(record: store_pb.TrajectoryRecord) -> str:
    return trajectory_id(record.request, record.model_id, record.model_revision)
