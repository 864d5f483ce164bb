"""Someone with the Redis password cannot approve a picture for the class: the gallery's signatures bind it.

Each entry is signed over its class, its id, its status and a revision; the
approval setting is signed too. A value put back after the teacher changed it,
an entry copied from another class, or a setting written without the secret is
treated as hidden (entries) or as "approval required" (the setting). Real Redis,
the service's own Gallery and store.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from services.common.api import pb, store_pb
from services.inference.together.gallery import APPROVED, HIDDEN, Gallery, _class_key
from services.inference.trajectories.cache import TrajectoryStore

SECRET = b"the school's cache secret"


def submission(key: str, student: str = "s-ada") -> store_pb.GallerySubmission:
    item = pb.GalleryItem(trajectory_key=key, student_name="Ada", request=pb.GenerateRequest(prompt="a red circle"),
                          shared_unix_time=time.time())  # fmt: skip
    return store_pb.GallerySubmission(item=item, student=student)


@pytest.fixture
def redis_server(fresh_redis):
    return fresh_redis("gallery")


def run(redis_server, scenario) -> object:
    """Run `scenario(gallery, raw)` with a Gallery on this Redis; `raw` is the attacker's own client."""

    async def main() -> object:
        store = TrajectoryStore(redis_server.url, 3600, secret=SECRET)
        try:
            with redis_server.client() as raw:
                return await scenario(Gallery(store), raw)
        finally:
            await store.close()

    return asyncio.run(main())


def shown(submissions: list[store_pb.GallerySubmission]) -> list[str]:
    return [s.item.id for s in submissions if s.item.status == APPROVED]


def test_an_approved_value_put_back_after_the_teacher_hid_it_stays_hidden(redis_server):
    async def scenario(gallery: Gallery, raw) -> None:
        await gallery.set_approval("7B", False)  # shares go straight in
        item = await gallery.share("7B", submission("a" * 64))
        assert item.status == APPROVED
        items = _class_key("7B", "items")
        approved = raw.hget(items, item.id)
        assert (await gallery.review("7B", item.id, HIDDEN)).status == HIDDEN
        raw.hset(items, item.id, approved)  # the old, genuinely signed value, replayed
        assert shown(await gallery.submissions("7B")) == []
        # The teacher sees it as hidden and may approve it again: that decision stands.
        assert [s.item.status for s in await gallery.submissions("7B")] == [HIDDEN]
        assert (await gallery.review("7B", item.id, APPROVED)).status == APPROVED
        assert shown(await gallery.submissions("7B")) == [item.id]

    run(redis_server, scenario)


def test_an_entry_moved_from_another_class_is_not_shown(redis_server):
    async def scenario(gallery: Gallery, raw) -> None:
        for classroom in ("7A", "7B"):
            await gallery.set_approval(classroom, False)
        theirs = await gallery.share("7A", submission("b" * 64))
        value = raw.hget(_class_key("7A", "items"), theirs.id)
        raw.hset(_class_key("7B", "items"), theirs.id, value)  # the same id, another class
        ours = await gallery.share("7B", submission("c" * 64))
        raw.hset(_class_key("7B", "items"), "f" * 20, raw.hget(_class_key("7B", "items"), ours.id))  # another id
        assert shown(await gallery.submissions("7B")) == [ours.id]
        assert shown(await gallery.submissions("7A")) == [theirs.id]

    run(redis_server, scenario)


def test_the_approval_setting_cannot_be_turned_off_without_the_secret(redis_server):
    async def scenario(gallery: Gallery, raw) -> None:
        key = _class_key("7B", "approval")
        assert await gallery.approval_required("7B")  # on by default
        raw.set(key, b"0")  # unsigned: as the setting was kept before
        assert await gallery.approval_required("7B")
        assert (await gallery.share("7B", submission("d" * 64))).status == pb.SUBMISSION_STATUS_PENDING
        await gallery.set_approval("7B", False)
        assert not await gallery.approval_required("7B")
        turned_off = raw.get(key)
        await gallery.set_approval("7B", True)
        raw.set(key, b"0" + raw.get(key)[1:])  # the teacher's "on", edited in place to "off"
        assert await gallery.approval_required("7B")
        raw.set(key, turned_off)  # the teacher's old "off", replayed
        assert await gallery.approval_required("7B")
        # Redis loses its data (restarted without saving): the teacher's next choice still counts.
        raw.flushall()
        assert await gallery.approval_required("7B")
        await gallery.set_approval("7B", False)
        assert not await gallery.approval_required("7B")

    run(redis_server, scenario)


def test_an_approved_entry_put_back_after_the_teacher_cleared_the_gallery_stays_hidden(redis_server):
    async def scenario(gallery: Gallery, raw) -> None:
        await gallery.set_approval("7B", False)
        item = await gallery.share("7B", submission("e" * 64))
        items = _class_key("7B", "items")
        approved = raw.hget(items, item.id)
        assert await gallery.clear("7B") == 1
        raw.hset(items, item.id, approved)  # its last genuinely signed value, put back
        assert shown(await gallery.submissions("7B")) == []
        # The student shares the same picture again after the clear: a new entry, shown.
        raw.hdel(items, item.id)
        again = await gallery.share("7B", submission("e" * 64))
        assert again.id == item.id and shown(await gallery.submissions("7B")) == [item.id]

    run(redis_server, scenario)
