"""A running trajectory's events are staged in Redis as they come; stored, it is `pack`'s bytes, on a real Redis.

Whatever happens to the staged bytes (lost to a restart, a guess of the length's width
proved wrong, a trajectory that is never stored), what is stored is `pack`'s bytes and
nothing staged is left behind.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future

import numpy as np
import pytest
from redis import Redis

from services.common.api import pb
from services.common.codecs import tensor_to_proto
from services.common.trajectories import Namespace, pack, record_id, redis_key
from services.inference.trajectories.cache import TrajectoryStore
from services.inference.trajectories.log import Trajectory
from services.inference.trajectories.record import RecordParts, SignedSoFar
from services.inference.trajectories.staging import STAGED_TTL_S, Stager, Staging, varint_width
from tests.unit.test_trajectory_store_packing import MODEL, SECRET, finished_trajectory


@pytest.fixture
def store(redis_server):
    return TrajectoryStore(redis_server.url, ad_hoc_ttl_s=60, secret=SECRET)


@pytest.fixture
def redis_client(redis_server):
    client = Redis.from_url(redis_server.url)
    for key in staged_keys(client):  # (the server is the session's: each test starts with nothing staged)
        client.delete(key)
    yield client
    client.close()


def drained(store: TrajectoryStore) -> None:
    """Every staged write handed over so far is made (the staging thread takes them in order)."""
    assert store._stager is not None
    store._stager.thread.submit(lambda: None).result()


def staged_keys(client: Redis) -> list[bytes]:
    return client.keys("*:staging:*")


def signed_and_staged(store: TrajectoryStore, trajectory: Trajectory, events: list[pb.GenerateResponse]) -> SignedSoFar:
    signing = store.signing(*trajectory.head)
    for event in events:
        signing.add(event)
    return signing


def stored(store: TrajectoryStore, parts: RecordParts, namespace: Namespace) -> bytes | None:
    async def play():
        assert await store.save(parts, namespace)
        value = await store.run(lambda client: client.get(redis_key(namespace, parts.trajectory_id())))
        await store.close()
        return value

    return asyncio.run(play())


def never_packed(parts: RecordParts, secret: bytes) -> bytes:
    raise AssertionError("written whole, not from its staged bytes")


@pytest.mark.parametrize("namespace", list(Namespace))
def test_a_staged_trajectory_is_stored_as_pack_stores_it(store, redis_client, namespace, monkeypatch):
    trajectory = finished_trajectory(f"a paper boat, staged as {namespace.value}")
    final = trajectory.events.pop()
    trajectory.signed_so_far = signed_and_staged(store, trajectory, [*trajectory.events, final])
    drained(store)
    # Every event is in Redis before the trajectory is stored, under a key that expires on its own.
    staging = trajectory.signed_so_far.staging
    assert staging is not None and not staging.failed
    assert redis_client.strlen(staging.key) == staging.blank + staging.written
    assert staging.written > sum(event.ByteSize() for event in trajectory.events)
    assert 0 < redis_client.ttl(staging.key) <= STAGED_TTL_S

    monkeypatch.setattr(RecordParts, "packed", never_packed)
    parts = trajectory.snapshot(final)
    assert stored(store, parts, namespace) == pack(parts.record(), SECRET)
    assert (store.stats.writes, store.stats.staged) == (1, 1)
    assert staged_keys(redis_client) == []
    ttl = redis_client.ttl(redis_key(namespace, parts.trajectory_id()))
    assert 0 < ttl <= 60 if namespace is Namespace.AD_HOC else ttl == -1  # (-1: kept for good)


def test_staged_bytes_lost_on_the_way_are_written_whole(store, redis_client):
    trajectory = finished_trajectory("a paper crane")
    events = list(trajectory.events)
    trajectory.signed_so_far = signed_and_staged(store, trajectory, events[:3])
    drained(store)
    redis_client.delete(trajectory.signed_so_far.staging.key)  # Redis restarted, or evicted it
    for event in events[3:]:
        trajectory.signed_so_far.add(event)
    drained(store)
    # The later writes did not make the key anew (it would have had no time to live, and never be evicted).
    assert staged_keys(redis_client) == []
    assert trajectory.signed_so_far.staging.failed and trajectory.snapshot().staging is None  # (written whole)
    assert stored(store, trajectory.snapshot(), Namespace.AD_HOC) == pack(trajectory.record(), SECRET)
    assert (store.stats.writes, store.stats.staged) == (1, 0)
    assert staged_keys(redis_client) == []


def test_a_trajectory_dropped_while_its_writes_wait_leaves_nothing(store, redis_client):
    trajectory = finished_trajectory("a paper wasp")
    trajectory.signed_so_far = signed_and_staged(store, trajectory, trajectory.events[:2])
    gate = threading.Event()
    store._stager.thread.submit(gate.wait)  # the staging thread is busy: what follows waits in its queue
    trajectory.signed_so_far.add(trajectory.events[2])
    trajectory.unstage()  # from the event loop, while the write above still waits
    trajectory.signed_so_far.add(trajectory.events[3])
    gate.set()
    drained(store)
    assert staged_keys(redis_client) == []


def test_a_length_guessed_too_short_from_the_first_step_is_written_whole(store, redis_client):
    """The first step is small and the later ones large: the payload's length needs a wider varint than chosen."""
    request = pb.GenerateRequest(prompt="a growing kite", num_inference_steps=3, width=64, height=64)
    trajectory = Trajectory("", request, MODEL)
    trajectory.append(pb.GenerateResponse(header=pb.TrajectoryHeader(request=request, total_steps=3)))
    for step, side in enumerate([8, 512, 512]):  # 1 KB, then 4 MB a step
        frame = pb.StepFrame(step_index=step, total_steps=3)
        frame.latent.CopyFrom(tensor_to_proto(np.full((4, side, side), step, np.float32)))
        trajectory.append(pb.GenerateResponse(frame=frame))
    trajectory.append(pb.GenerateResponse(final=pb.FinalImage(image=pb.Image(data=b"picture"))))
    trajectory.signed_so_far = signed_and_staged(store, trajectory, trajectory.events)
    staging = trajectory.signed_so_far.staging
    assert staging.blank - staging.fixed - len(staging.head) < varint_width(staging.written)
    assert stored(store, trajectory.snapshot(), Namespace.AD_HOC) == pack(trajectory.record(), SECRET)
    assert store.stats.staged == 0
    assert staged_keys(redis_client) == []


def test_a_trajectory_that_is_not_stored_leaves_nothing_staged(store, redis_client):
    trajectory = finished_trajectory("a paper hat")
    trajectory.signed_so_far = signed_and_staged(store, trajectory, trajectory.events[:3])
    drained(store)
    assert len(staged_keys(redis_client)) == 1
    trajectory.unstage()  # stopped, failed, or its picture flagged
    trajectory.signed_so_far.add(trajectory.events[3])  # (an event encoded meanwhile is not staged)
    drained(store)
    assert staged_keys(redis_client) == []


def test_stored_again_as_a_lesson_s_it_is_written_whole(store, redis_client):
    trajectory = finished_trajectory("a paper lantern")
    trajectory.signed_so_far = signed_and_staged(store, trajectory, trajectory.events)
    drained(store)

    async def play():
        assert await store.save(trajectory.snapshot(), Namespace.AD_HOC)
        trajectory.lesson_entry = "lanterns/one"  # a lesson asked for it while it was stored
        assert await store.save(trajectory.snapshot(), Namespace.LESSON)
        await store.close()

    asyncio.run(play())
    key = record_id(trajectory.record())
    ad_hoc, lesson = (
        redis_client.get(redis_key(Namespace.AD_HOC, key)),
        redis_client.get(redis_key(Namespace.LESSON, key)),
    )
    trajectory.lesson_entry = ""
    assert ad_hoc == pack(trajectory.record(), SECRET)
    trajectory.lesson_entry = "lanterns/one"
    assert lesson == pack(trajectory.record(), SECRET)
    assert (store.stats.writes, store.stats.staged) == (2, 1)
    assert staged_keys(redis_client) == []


class Recorded:
    """An executor that runs nothing and keeps what it was given."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def submit(self, function, *args) -> Future:
        self.calls.append(args)
        return Future()


@pytest.mark.parametrize(("step", "width"), [(100, 2), (2_488, 2), (5_000, 0), (100_000, 3), (5_000_000, 4)])
def test_the_length_s_width_is_chosen_from_the_first_step_unless_near_a_boundary(step, width):
    thread = Recorded()
    stager = Stager(Redis.from_url("redis://127.0.0.1:1"), pause_s=2.0)  # (never asked: nothing runs)
    stager.thread = thread  # type: ignore[assignment]
    staging = Staging(stager, "a trajectory", fixed=5, head=b"h" * 20, events=5)
    staging.add(b"a" * 30)
    assert thread.calls == []  # (held until the first step's size is known)
    staging.add(b"b" * step)  # the estimate: 20 + 30 + 4 x step
    if width == 0:  # 20,050 bytes: within a factor 1.5 of 16 KiB, where the varint goes from 2 bytes to 3
        assert staging.failed and thread.calls == []
    else:
        blank = 5 + width + 20
        assert thread.calls == [(b"a" * 30 + b"b" * step, 0, blank)]  # into a new key, after its blank
        staging.add(b"c")
        assert thread.calls[-1] == (b"c", blank + 30 + step, blank + 30 + step)  # appended to the key as written
        assert staging.written == 30 + step + 1


def test_redis_gone_while_staging_pauses_it_and_nothing_is_stored(fresh_redis):
    server = fresh_redis("staging")
    store = TrajectoryStore(server.url, ad_hoc_ttl_s=60, secret=SECRET, retry_after_s=60)
    trajectory = finished_trajectory("a paper moth")
    trajectory.signed_so_far = signed_and_staged(store, trajectory, trajectory.events[:2])
    drained(store)
    server.stop()
    for event in trajectory.events[2:]:
        trajectory.signed_so_far.add(event)  # the first write that fails pauses staging; the rest give up at once
    drained(store)
    assert trajectory.signed_so_far.staging.failed and store._stager.paused
    assert store.signing(*finished_trajectory("a paper bat").head).staging is None  # nothing new is staged meanwhile

    async def play():
        saved = await store.save(trajectory.snapshot(), Namespace.AD_HOC)
        await store.close()
        return saved

    assert asyncio.run(play()) is False  # written whole, which fails as any write to a Redis that is gone
    assert store.stats.errors == 1 and not store.available
