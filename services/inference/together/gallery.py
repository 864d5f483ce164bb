"""The class gallery: finished pictures students share with their class, kept in Redis.

A student shares a picture by the trajectory key its stream gave; the gallery
takes the picture, the request and the latent path from the trajectory the
service itself stored (never from the client), so only pictures this service
computed, unflagged, can reach it. Each class's submissions are one Redis hash;
the teacher approves or hides each one (or lets shares through without approval)
and clears a class's gallery. Bounded: at most `max_items` per class and
`max_per_student` per student.

Someone with the Redis password must not be able to put a picture before the
class. So each entry is signed with the cache secret over its class, its id, its
status and a revision (the class's write counter), and so is the approval
setting. An entry that fails its signature (forged, edited, moved from another
class or id, or written before entries were signed so) is dropped; one older than
a revision this process has seen for it (an old APPROVED value put back after the
teacher hid it) is read as hidden; an approval setting that fails its signature or
is older than one seen means approval is required. A rollback of all of Redis
across a restart of the service cannot be told from the truth: nothing outside
Redis remembers.
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
from services.inference.refusals import GalleryFull, GalleryUnavailable, NotInGallery
from services.inference.together.classmap import pooled_path
from services.inference.together.shared import class_digest
from services.inference.trajectories.cache import TrajectoryStore

T = TypeVar("T")

MAX_ITEMS = 60  # per class: a lesson's worth of pictures
MAX_PER_STUDENT = 6
PICTURE_SIDE = 256  # the gallery's copy of a picture is at most this wide and high

PENDING, APPROVED, HIDDEN = pb.SUBMISSION_STATUS_PENDING, pb.SUBMISSION_STATUS_APPROVED, pb.SUBMISSION_STATUS_HIDDEN
REMEMBERED = 50_000  # revisions remembered (entries and settings), newest kept


def _class_key(classroom: str, part: str) -> str:
    return f"{KEY_PREFIX}:gallery:{class_digest(classroom)}:{part}"


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
        # The newest revision this process wrote or read, per entry and per class's approval setting.
        self._newest: dict[tuple[str, ...], int] = {}

    async def _redis(self, operation: Callable[[redis.Redis], Awaitable[T]]) -> T:
        """One Redis operation; GalleryUnavailable when Redis is away (the gallery lives nowhere else)."""

        async def boxed(client: redis.Redis) -> tuple[T]:
            return (await operation(client),)

        result = await self.store.run(boxed)
        if result is None:
            raise GalleryUnavailable()
        return result[0]

    def _mac(self, *parts: str | bytes) -> bytes:
        message = b"\0".join(part.encode() if isinstance(part, str) else part for part in parts)
        return hmac.new(self.store.secret, message, hashlib.sha256).digest()

    def _current(self, what: tuple[str, ...], revision: int) -> bool:
        """Whether `revision` is at least the newest seen for `what` (then it is remembered as the newest)."""
        if revision < self._newest.get(what, 0):
            return False
        self._newest[what] = revision
        if len(self._newest) > REMEMBERED:
            for old in list(self._newest)[: REMEMBERED // 10]:  # the oldest entries remembered
                del self._newest[old]
        return True

    async def _next_revision(self, classroom: str, what: tuple[str, ...]) -> int:
        """The class's next revision, past any this process has seen for `what`.

        A counter that went back (Redis lost its data, or someone set it) is moved on, so the
        teacher's new decision is never read as an old one.
        """
        counter = _class_key(classroom, "revision")
        revision = int(await self._redis(lambda r: r.incr(counter)))
        floor = self._newest.get(what, 0)
        if revision <= floor:
            revision = int(await self._redis(lambda r: r.incrby(counter, floor + 1 - revision)))
        return revision

    def _sign(self, classroom: str, submission: store_pb.GallerySubmission, revision: int) -> bytes:
        item = submission.item
        payload = submission.SerializeToString(deterministic=True)
        mac = self._mac("gallery entry", classroom, item.id, str(item.status), str(revision), payload)
        self._current(("entry", classroom, item.id), revision)
        return store_pb.StoredGallerySubmission(payload=payload, hmac_sha256=mac, revision=revision).SerializeToString()

    def _open(self, classroom: str, item_id: str, value: bytes) -> store_pb.GallerySubmission | None:
        """The submission stored as `item_id` of `classroom`, or None when it is unreadable or not signed for it.

        An older value than one already seen for this entry is read as hidden: the
        teacher's later decision stands.
        """
        try:
            stored = store_pb.StoredGallerySubmission.FromString(value)
            submission = store_pb.GallerySubmission.FromString(stored.payload)
        except Exception:  # whatever the bytes are, they are not a submission
            return None
        item = submission.item
        mac = self._mac("gallery entry", classroom, item_id, str(item.status), str(stored.revision), stored.payload)
        if not hmac.compare_digest(mac, stored.hmac_sha256) or item.id != item_id:
            return None
        if not self._current(("entry", classroom, item_id), stored.revision):
            item.status = HIDDEN
        return submission

    def item_id(self, classroom: str, student: str, key: str) -> str:
        """One id per student, class and picture: sharing the same picture again finds the same entry."""
        message = f"gallery\0{classroom}\0{student}\0{key}".encode()
        return hmac.new(self.store.secret, message, hashlib.sha256).hexdigest()[:20]

    async def approval_required(self, classroom: str) -> bool:
        """On unless the teacher's own current setting, signed, turned it off (stored as `flag:revision:mac`)."""
        value = await self._redis(lambda r: r.get(_class_key(classroom, "approval")))
        try:
            flag, revision_text, mac = (value or b"").split(b":")
            revision = int(revision_text)
            signed = hmac.compare_digest(bytes.fromhex(mac.decode()), self._approval_mac(classroom, flag, revision))
        except ValueError:  # none, unsigned (as kept before settings were signed), or not ours
            return True
        return not (signed and self._current(("approval", classroom), revision) and flag == b"0")

    def _approval_mac(self, classroom: str, flag: bytes, revision: int) -> bytes:
        return self._mac("gallery approval", classroom, flag, str(revision))

    async def set_approval(self, classroom: str, required: bool) -> bool:
        revision = await self._next_revision(classroom, ("approval", classroom))
        flag = b"1" if required else b"0"
        value = b"%s:%d:%s" % (flag, revision, self._approval_mac(classroom, flag, revision).hex().encode())
        self._current(("approval", classroom), revision)
        await self._redis(lambda r: r.set(_class_key(classroom, "approval"), value))
        return required

    async def submissions(self, classroom: str) -> list[store_pb.GallerySubmission]:
        """Every submission of a class, newest first (entries that fail their signature are dropped)."""
        values = await self._redis(lambda r: r.hgetall(_class_key(classroom, "items")))
        opened = (self._open(classroom, field.decode(errors="replace"), value) for field, value in values.items())
        found = [s for s in opened if s is not None]
        return sorted(found, key=lambda s: s.item.shared_unix_time, reverse=True)

    async def share(self, classroom: str, submission: store_pb.GallerySubmission) -> pb.GalleryItem:
        """Add a submission (pending, or approved when the class needs no approval); the same one again is a no-op."""
        submission.item.id = self.item_id(classroom, submission.student, submission.item.trajectory_key)
        items = _class_key(classroom, "items")
        existing = await self._redis(lambda r: r.hget(items, submission.item.id))
        if existing is not None and (kept := self._open(classroom, submission.item.id, existing)) is not None:
            return kept.item
        present = await self.submissions(classroom)
        if len(present) >= self.max_items:
            raise GalleryFull(self.max_items)
        if sum(s.student == submission.student for s in present) >= self.max_per_student:
            raise GalleryFull(self.max_per_student, per_student=True)
        needs_approval = await self.approval_required(classroom)
        submission.item.status = PENDING if needs_approval else APPROVED
        revision = await self._next_revision(classroom, ("entry", classroom, submission.item.id))
        signed = self._sign(classroom, submission, revision)
        await self._redis(lambda r: r.hset(items, submission.item.id, signed))
        return submission.item

    async def review(self, classroom: str, item_id: str, status: int) -> pb.GalleryItem:
        """The teacher approves or hides one submission."""
        items = _class_key(classroom, "items")
        value = await self._redis(lambda r: r.hget(items, item_id))
        submission = self._open(classroom, item_id, value) if value is not None else None
        if submission is None:
            raise NotInGallery()
        submission.item.status = status
        signed = self._sign(classroom, submission, await self._next_revision(classroom, ("entry", classroom, item_id)))
        await self._redis(lambda r: r.hset(items, item_id, signed))
        return submission.item

    async def clear(self, classroom: str) -> int:
        items = _class_key(classroom, "items")
        values = await self._redis(lambda r: r.hgetall(items))
        await self._redis(lambda r: r.delete(items))
        for field, value in values.items():  # a cleared entry's last value, put back, reads as hidden
            try:
                revision = store_pb.StoredGallerySubmission.FromString(value).revision
            except Exception:  # not an entry: nothing to remember
                continue
            what = ("entry", classroom, field.decode(errors="replace"))
            self._newest[what] = max(self._newest.get(what, 0), revision + 1)
        return len(values)
