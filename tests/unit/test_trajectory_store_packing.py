"""A finished trajectory is packed on the store's thread and stored exactly as `pack` stores it, on a real Redis.

The stored bytes are `pack`'s (the format and the signature every reader and every
replica checks), made from each event's own bytes (`RecordParts.packed`) off the event
loop; what is stored is the trajectory as it stood when its storing began.
"""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace

import numpy as np
import pytest

from services.common.api import pb
from services.common.codecs import encode_image, tensor_to_proto
from services.common.trajectories import Namespace, pack, record_id, redis_key
from services.inference.trajectories import cache
from services.inference.trajectories.cache import RecordParts, TrajectoryStore
from services.inference.trajectories.log import Trajectory

MODEL = SimpleNamespace(model_id="tiny", revision="r1")
SECRET = b"packing test"
STEPS = 3


def finished_trajectory(prompt: str, lesson_entry: str = "") -> Trajectory:
    """A trajectory with every kind of event, tensors and pictures of a few hundred kilobytes among them."""
    request = pb.GenerateRequest(prompt=prompt, num_inference_steps=STEPS, seed=7, width=64, height=64)
    request.include.paths.extend(["cross_attention", "latent_preview"])  # (the on-request one stays: in the key)
    trajectory = Trajectory("", request, MODEL)
    trajectory.lesson_entry = lesson_entry
    header = pb.TrajectoryHeader(request=trajectory.request, total_steps=STEPS, timesteps=[999.0, 500.0, 1.0])
    trajectory.append(pb.GenerateResponse(header=header))
    generator = np.random.default_rng(3)
    for step in range(STEPS):
        latent = generator.standard_normal((4, 64, 64), dtype=np.float32)
        rgb = generator.integers(0, 255, (64, 64, 3), dtype=np.uint8)
        frame = pb.StepFrame(step_index=step, total_steps=STEPS, timestep=999.0 - step, sigma=0.5 * step)
        frame.latent.CopyFrom(tensor_to_proto(latent))
        frame.latent_preview.CopyFrom(encode_image(rgb, "image/jpeg", approximate=True, decoder="linear"))
        frame.timings.unet_seconds = 0.01 * step
        trajectory.append(pb.GenerateResponse(frame=frame))
    picture = encode_image(generator.integers(0, 255, (64, 64, 3), dtype=np.uint8), "image/png", decoder="vae")
    trajectory.append(pb.GenerateResponse(final=pb.FinalImage(image=picture)))
    return trajectory


@pytest.mark.parametrize("lesson_entry", ["", "change-one-word/owl/a"])
def test_the_parts_are_packed_byte_for_byte_as_the_record(lesson_entry):
    trajectory = finished_trajectory("a paper boat", lesson_entry)
    parts = trajectory.snapshot()
    assert parts.record() == trajectory.record()
    assert parts.packed(SECRET) == pack(trajectory.record(), SECRET)
    assert parts.trajectory_id() == record_id(trajectory.record())
    assert parts.packed(b"another secret") != parts.packed(SECRET)


def test_an_empty_record_is_packed_as_pack_packs_it():
    parts = RecordParts(pb.GenerateRequest(), "", "", ())
    assert parts.packed(SECRET) == pack(parts.record(), SECRET)


@pytest.fixture
def store(redis_server):
    return TrajectoryStore(redis_server.url, ad_hoc_ttl_s=60, secret=SECRET)


@pytest.mark.parametrize("namespace", list(Namespace))
def test_a_snapshot_is_stored_as_its_record_packed_and_read_back(store, namespace):
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


def test_it_is_packed_off_the_event_loop(store, monkeypatch):
    packed_on: list[threading.Thread] = []
    packed = RecordParts.packed

    def watched(parts: RecordParts, secret: bytes) -> bytes:
        packed_on.append(threading.current_thread())
        return packed(parts, secret)

    monkeypatch.setattr(cache.RecordParts, "packed", watched)

    async def play():
        assert await store.save(finished_trajectory("a paper crane").snapshot(), Namespace.AD_HOC)
        await store.close()

    asyncio.run(play())
    assert len(packed_on) == 1 and packed_on[0] is not threading.current_thread()
    assert packed_on[0].name.startswith("trajectory-packer")


def test_a_snapshot_holds_the_trajectory_as_it_stood():
    trajectory = finished_trajectory("a paper plane")
    before = trajectory.record()
    snapshot = trajectory.snapshot()
    trajectory.lesson_entry = "lesson-3/boat"
    trajectory.append(pb.GenerateResponse(final=pb.FinalImage(image=pb.Image(data=b"another"))))
    assert snapshot.record() == before
    assert trajectory.record() != before


def test_a_picture_not_yet_in_the_log_is_the_snapshot_s_last_event():
    trajectory = finished_trajectory("a paper lantern")
    final = trajectory.events.pop()
    assert trajectory.snapshot(final).record() == finished_trajectory("a paper lantern").record()


def test_without_redis_nothing_is_packed(monkeypatch):
    store = TrajectoryStore(None, ad_hoc_ttl_s=60, secret=SECRET)

    def never(parts: RecordParts, secret: bytes) -> bytes:
        raise AssertionError("packed for no Redis")

    monkeypatch.setattr(cache.RecordParts, "packed", never)
    assert asyncio.run(store.save(finished_trajectory("a paper hat").snapshot(), Namespace.AD_HOC)) is False
