"""The class gallery: finished pictures students share with their class, kept in Redis.

A student shares a picture by the trajectory key its stream gave; the gallery
takes the picture, the request and the latent path from the trajectory the
service itself stored (never from the client), so only pictures this service
computed, unflagged, can reach it. Each class's submissions are one Redis hash,
each entry signed with the cache secret like a stored trajectory; the teacher
approves or hides each one (or lets shares through without approval) and
clears a class's gallery. Bounded: at most `max_items` per class and
`max_per_student` per student.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import numpy as np
import redis.asyncio as redis
from PIL import Image as PILImage

from services.common.api import pb, store_pb
from services.common.codecs import decode_image, tensor_from_proto, tensor_to_proto
from services.common.trajectories import KEY_PREFIX
from services.inference.cache import TrajectoryStore
from services.inference.classmap import pooled_path
from services.inference.refusals import GalleryFull, GalleryUnavailable, NotInGallery

T = TypeVar("T")

MAX_ITEMS = 60  # per class: a lesson's worth of pictures
MAX_PER_STUDENT = 6
PICTURE_SIDE = 256  # the gallery's copy of a picture is at most this wide and high

PENDING, APPROVED, HIDDEN = pb.SUBMISSION_STATUS_PENDING, pb.SUBMISSION_STATUS_APPROVED, pb.SUBMISSION_STATUS_HIDDEN


def _class_key(classroom: str, part: str) -> str:
    # A digest, so any class name (spaces, any script) makes a plain key.
    digest = hashlib.sha256(classroom.encode()).hexdigest()[:24]
    return f"{KEY_PREFIX}:gallery:{digest}:{part}"


def _picture(final: pb.Image) -> pb.Image:
    """The gallery's copy of a final image: the same PNG when small, else scaled down to PICTURE_SIDE."""
    if max(final.width, final.height) <= PICTURE_SIDE:
        return final
    picture = PILImage.fromarray(decode_image(final))
    picture.thumbnail((PICTURE_SIDE, PICTURE_SIDE))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return pb.Image(mime_type="image/png", data=buffer.getvalue(), width=picture.width, height=picture.height,
                    decoder=final.decoder)  # fmt: skip


def submission_from(record: store_pb.TrajectoryRecord, key: str, student: str, name: str) -> store_pb.GallerySubmission:
    """What the gallery keeps of a stored trajectory: its request, its picture and its latent path."""
    header, final = record.events[0].header, record.events[-1].final
    latents = [tensor_from_proto(header.initial_latent)]
    latents += [tensor_from_proto(event.frame.latent) for event in record.events[1:-1]]
    item = pb.GalleryItem(
        trajectory_key=key, student_name=name, request=header.request, picture=_picture(final.image),
        shared_unix_time=time.time(),
    )  # fmt: skip
    return store_pb.GallerySubmission(item=item, student=student, path=tensor_to_proto(pooled_path(latents)))


def path_of(submission: store_pb.GallerySubmission) -> np.ndarray:
    return tensor_from_proto(submission.path).astype(np.float32)


class Gallery:
    """Each class's shared pictures, in Redis, through the store's one connection."""

    def __init__(
        self, store: TrajectoryStore, max_items: int = MAX_ITEMS, max_per_student: int = MAX_PER_STUDENT
    ) -> None:
        self.store, self.max_items, self.max_per_student = store, max_items, max_per_student

    async def _redis(self, operation: Callable[[redis.Redis], Awaitable[T]]) -> T:
        """One Redis operation; GalleryUnavailable when Redis is away (the gallery lives nowhere else)."""

        async def boxed(client: redis.Redis) -> tuple[T]:
            return (await operation(client),)

        result = await self.store.run(boxed)
        if result is None:
            raise GalleryUnavailable()
        return result[0]

    def _sign(self, submission: store_pb.GallerySubmission) -> bytes:
        payload = submission.SerializeToString(deterministic=True)
        mac = hmac.new(self.store.secret, payload, hashlib.sha256).digest()
        return store_pb.StoredGallerySubmission(payload=payload, hmac_sha256=mac).SerializeToString()

    def _open(self, value: bytes) -> store_pb.GallerySubmission | None:
        """A stored submission, or None when it is unreadable or not signed with this server's secret."""
        try:
            stored = store_pb.StoredGallerySubmission.FromString(value)
            mac = hmac.new(self.store.secret, stored.payload, hashlib.sha256).digest()
            if not hmac.compare_digest(mac, stored.hmac_sha256):
                return None
            return store_pb.GallerySubmission.FromString(stored.payload)
        except Exception:  # whatever the bytes are, they are not a submission
            return None

    def item_id(self, classroom: str, student: str, key: str) -> str:
        """One id per student, class and picture: sharing the same picture again finds the same entry."""
        message = f"gallery\0{classroom}\0{student}\0{key}".encode()
        return hmac.new(self.store.secret, message, hashlib.sha256).hexdigest()[:20]

    async def approval_required(self, classroom: str) -> bool:
        value = await self._redis(lambda r: r.get(_class_key(classroom, "approval")))
        return value != b"0"  # on unless the teacher turned it off

    async def set_approval(self, classroom: str, required: bool) -> bool:
        await self._redis(lambda r: r.set(_class_key(classroom, "approval"), b"1" if required else b"0"))
        return required

    async def submissions(self, classroom: str) -> list[store_pb.GallerySubmission]:
        """Every submission of a class, newest first (entries that fail their signature are dropped)."""
        values = await self._redis(lambda r: r.hgetall(_class_key(classroom, "items")))
        found = [s for s in (self._open(v) for v in values.values()) if s is not None]
        return sorted(found, key=lambda s: s.item.shared_unix_time, reverse=True)

    async def share(self, classroom: str, submission: store_pb.GallerySubmission) -> pb.GalleryItem:
        """Add a submission (pending, or approved when the class needs no approval); the same one again is a no-op."""
        submission.item.id = self.item_id(classroom, submission.student, submission.item.trajectory_key)
        items = _class_key(classroom, "items")
        existing = await self._redis(lambda r: r.hget(items, submission.item.id))
        if existing is not None and (kept := self._open(existing)) is not None:
            return kept.item
        present = await self.submissions(classroom)
        if len(present) >= self.max_items:
            raise GalleryFull(self.max_items)
        if sum(s.student == submission.student for s in present) >= self.max_per_student:
            raise GalleryFull(self.max_per_student, per_student=True)
        needs_approval = await self.approval_required(classroom)
        submission.item.status = PENDING if needs_approval else APPROVED
        await self._redis(lambda r: r.hset(items, submission.item.id, self._sign(submission)))
        return submission.item

    async def review(self, classroom: str, item_id: str, status: int) -> pb.GalleryItem:
        """The teacher approves or hides one submission."""
        items = _class_key(classroom, "items")
        value = await self._redis(lambda r: r.hget(items, item_id))
        submission = self._open(value) if value is not None else None
        if submission is None:
            raise NotInGallery()
        submission.item.status = status
        await self._redis(lambda r: r.hset(items, item_id, self._sign(submission)))
        return submission.item

    async def clear(self, classroom: str) -> int:
        items = _class_key(classroom, "items")
        count = await self._redis(lambda r: r.hlen(items))
        await self._redis(lambda r: r.delete(items))
        return int(count)
