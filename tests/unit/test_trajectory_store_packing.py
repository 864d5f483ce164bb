"""A finished trajectory is packed off the event loop and stored exactly as before, on a real Redis.

The stored bytes are `pack`'s (the format and the signature every reader and every
replica checks), the record is made on the store's own thread, and what is stored is
the trajectory as it stood when its storing began.
"""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace

import pytest

from services.common.api import pb, store_pb
from services.common.trajectories import Namespace, pack, record_id, redis_key
from services.inference.trajectories.cache import TrajectoryStore
from services.inference.trajectories.log import Trajectory

MODEL = SimpleNamespace(model_id="tiny", revision="r1")
SECRET = b"packing test"
STEPS = 3


def finished_trajectory(prompt: str) -> Trajectory:
    trajectory = Trajectory("", pb.GenerateRequest(prompt=prompt, num_inference_steps=STEPS), MODEL)
    trajectory.append(pb.GenerateResponse(header=pb.TrajectoryHeader(request=trajectory.request, total_steps=STEPS)))
    for step in range(STEPS):
        latent = pb.Tensor(shape=[4, 8, 8], data=bytes([step]) * 512)
        trajectory.append(pb.GenerateResponse(frame=pb.StepFrame(step_index=step, total_steps=STEPS, latent=latent)))
    trajectory.append(pb.GenerateResponse(final=pb.FinalImage(image=pb.Image(data=b"picture"))))
    return trajectory


@pytest.fixture
def store(redis_server):
    return TrajectoryStore(redis_server.url, ad_hoc_ttl_s=60, secret=SECRET)


@pytest.mark.parametrize("namespace", list(Namespace))
def test_a_snapshot_is_stored_byte_for_byte_as_its_record_packed(store, redis_server, namespace):
    trajectory = finished_trajectory(f"a paper boat, kept as {namespace.value}")
    expected = trajectory.record()

    async def play():
        assert await store.save(trajectory.snapshot(), namespace)
        stored = await store.run(lambda client: client.get(redis_key(namespace, record_id(expected))))
        found = await store.load(record_id(expected))
        await store.close()
        return stored, found

    stored, found = asyncio.run(play())
    assert stored == pack(expected, SECRET)
    assert found is not None and found[0] == expected and found[1] is namespace
    assert store.stats.writes == 1


def test_a_record_given_whole_is_stored_as_before(store):
    record = finished_trajectory("a paper kite").record()

    async def play():
        assert await store.save(record, Namespace.AD_HOC)
        stored = await store.run(lambda client: client.get(redis_key(Namespace.AD_HOC, record_id(record))))
        await store.close()
        return stored

    assert asyncio.run(play()) == pack(record, SECRET)


def test_the_record_is_made_off_the_event_loop(store):
    trajectory = finished_trajectory("a paper crane")
    made_on: list[threading.Thread] = []
    snapshot = trajectory.snapshot()

    def make() -> store_pb.TrajectoryRecord:
        made_on.append(threading.current_thread())
        return snapshot()

    async def play():
        assert await store.save(make, Namespace.AD_HOC)
        await store.close()

    asyncio.run(play())
    assert made_on and made_on[0] is not threading.main_thread()
    assert made_on[0].name.startswith("trajectory-packer")


def test_a_snapshot_holds_the_trajectory_as_it_stood():
    trajectory = finished_trajectory("a paper plane")
    before = trajectory.record()
    snapshot = trajectory.snapshot()
    trajectory.lesson_entry = "lesson-3/boat"
    trajectory.append(pb.GenerateResponse(final=pb.FinalImage(image=pb.Image(data=b"another"))))
    assert snapshot() == before
    assert trajectory.record() != before


def test_without_redis_nothing_is_packed():
    store = TrajectoryStore(None, ad_hoc_ttl_s=60, secret=SECRET)

    def make() -> store_pb.TrajectoryRecord:
        raise AssertionError("packed for no Redis")

    assert asyncio.run(store.save(make, Namespace.AD_HOC)) is False
