"""Lesson packs: every lesson trajectory of one Redis in one file, to load into another.

A school can render the lessons on a GPU machine, export them, and serve them
from a machine without one. The file holds the stored trajectories as they
are in Redis (checksummed, versioned); import checks each before storing it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import redis

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
    rejected: int = 0

    def __str__(self) -> str:
        return f"imported {self.imported} lesson trajectories, rejected {self.rejected} damaged ones"


def export_lessons(client: redis.Redis, path: Path) -> int:
    """Write every lesson trajectory in Redis to `path`; returns how many."""
    count = 0
    with path.open("wb") as out:
        out.write(MAGIC + _VERSION.pack(FORMAT_VERSION))
        for key in client.scan_iter(match=f"{KEY_PREFIX}:v{FORMAT_VERSION}:{Namespace.LESSON}:*", count=100):
            value = client.get(key)
            if value is None:
                continue  # deleted meanwhile
            try:
                unpack(value)
            except CorruptTrajectory:
                continue  # never pass on a damaged entry
            out.write(_LENGTH.pack(len(value)) + value)
            count += 1
    return count


def import_lessons(client: redis.Redis, path: Path) -> ImportSummary:
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
                record = unpack(value)
            except CorruptTrajectory:
                summary.rejected += 1
                continue
            client.set(redis_key(Namespace.LESSON, record_id(record)), pack(record))
            summary.imported += 1
    return summary
