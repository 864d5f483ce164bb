"""Lesson packs: every lesson trajectory of one Redis in one file, to load into another.

A school can render the lessons on a GPU machine, export them, and serve them
from a machine without one. The file holds the stored trajectories as they
are in Redis (versioned, signed with the exporting server's cache secret).
Import checks each: one signed with this server's secret is stored as it is;
one signed elsewhere is stored only after every event checks out, signed anew
with this server's secret (the teacher running the import vouches for the file).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import redis

from services.common.api import store_pb
from services.common.codecs import decode_image, tensor_from_proto
from services.common.trajectories import (
    FORMAT_VERSION,
    KEY_PREFIX,
    CorruptTrajectory,
    Namespace,
    pack,
    record_id,
    redis_key,
    unpack,
)

MAGIC = b"DIFFUSION-CLASSROOM-LESSONS\n"
_LENGTH = struct.Struct(">Q")
_VERSION = struct.Struct(">I")


@dataclass
class ImportSummary:
    imported: int = 0
    signed_anew: int = 0  # of those imported: signed elsewhere, checked and signed with this server's secret
    rejected: int = 0

    def __str__(self) -> str:
        return (
            f"imported {self.imported} lesson trajectories ({self.signed_anew} signed anew for this server), "
            f"rejected {self.rejected} damaged ones"
        )


def export_lessons(client: redis.Redis, path: Path, secret: bytes) -> int:
    """Write every lesson trajectory in Redis to `path`; returns how many."""
    count = 0
    with path.open("wb") as out:
        out.write(MAGIC + _VERSION.pack(FORMAT_VERSION))
        for key in client.scan_iter(match=f"{KEY_PREFIX}:v{FORMAT_VERSION}:{Namespace.LESSON}:*", count=100):
            value = client.get(key)
            if value is None:
                continue  # deleted meanwhile
            try:
                unpack(value, secret)
            except CorruptTrajectory:
                continue  # never pass on a damaged or forged entry
            out.write(_LENGTH.pack(len(value)) + value)
            count += 1
    return count


def import_lessons(client: redis.Redis, path: Path, secret: bytes) -> ImportSummary:
    """Load a lesson pack into Redis, in the lesson namespace (never evicted)."""
    summary = ImportSummary()
    with path.open("rb") as source:
        if source.read(len(MAGIC)) != MAGIC:
            raise ValueError(f"{path} is not a Diffusion Classroom lesson pack")
        (version,) = _VERSION.unpack(source.read(_VERSION.size))
        if version != FORMAT_VERSION:
            raise ValueError(f"{path} holds format {version}; this version reads format {FORMAT_VERSION}")
        while header := source.read(_LENGTH.size):
            (length,) = _LENGTH.unpack(header)
            value = source.read(length)
            try:
                record = unpack(value, secret)
            except CorruptTrajectory:
                try:
                    record = unpack(value, None)  # signed elsewhere: the contents must hold up on their own
                    check_events(record)
                except CorruptTrajectory:
                    summary.rejected += 1
                    continue
                summary.signed_anew += 1
            client.set(redis_key(Namespace.LESSON, record_id(record)), pack(record, secret))
            summary.imported += 1
    return summary


def check_events(record: store_pb.TrajectoryRecord) -> None:
    """Every picture and tensor of a trajectory decodes, at the sizes its request says."""
    request = record.request
    try:
        header = record.events[0].header
        initial = tensor_from_proto(header.initial_latent)
        for event in record.events[1:-1]:
            frame = event.frame
            for tensor in (frame.latent, frame.predicted_x0):
                if tensor.data and tensor_from_proto(tensor).shape != initial.shape:
                    raise CorruptTrajectory("a step's latent has another shape than the first")
            for image in (frame.latent_preview, frame.predicted_x0_preview):
                if image.data:
                    decode_image(image)
        final = decode_image(record.events[-1].final.image)
    except CorruptTrajectory:
        raise
    except Exception as error:
        raise CorruptTrajectory(f"an event does not decode: {error}") from error
    if final.shape[:2] != (request.height, request.width):
        raise CorruptTrajectory(f"the image is {final.shape[1]}x{final.shape[0]}, not {request.width}x{request.height}")
