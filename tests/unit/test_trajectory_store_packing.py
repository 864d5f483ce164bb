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

from services.common.api import pb, store_pb
from services.common.codecs import encode_image, tensor_to_proto
from services.common.trajectories import Namespace, pack, record_id, redis_key
from services.inference.trajectories import cache
from services.inference.trajectories.cache import TrajectoryStore
from services.inference.trajectories.log import Trajectory
from services.inference.trajectories.record import RecordParts, SignedSoFar

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


def signed_as_it_came(trajectory: Trajectory, count: int, secret: bytes = SECRET) -> SignedSoFar:
    """A running signature over the trajectory's first `count` events, added one at a time as the hub adds them."""
    signing = SignedSoFar(secret, trajectory.request, trajectory.model_id, trajectory.revision)
    for event in trajectory.events[:count]:
        signing.add(event)
    return signing


class CountingHmac:
    """Every byte a signature reads, counted (the running signature's copy is one of these)."""

    read = 0

    def __init__(self, inner) -> None:
        self.inner = inner

    def update(self, data: bytes) -> None:
        CountingHmac.read += len(data)
        self.inner.update(data)

    def digest(self) -> bytes:
        return self.inner.digest()

    def copy(self) -> CountingHmac:
        return CountingHmac(self.inner.copy())


@pytest.mark.parametrize("lesson_entry", ["", "change-one-word/owl/a"])
def test_a_trajectory_signed_as_it_came_is_packed_byte_for_byte_as_the_record(lesson_entry, monkeypatch):
    trajectory = finished_trajectory("a paper fox", lesson_entry)
    final = trajectory.events.pop()
    trajectory.signed_so_far = signed_as_it_came(trajectory, len(trajectory.events))
    trajectory.signed_so_far.add(final)  # the picture is signed when made, before the log has it
    expected = pack(trajectory.snapshot(final).record(), SECRET)
    monkeypatch.setattr(trajectory.signed_so_far, "_signature", CountingHmac(trajectory.signed_so_far._signature))
    CountingHmac.read = 0
    assert trajectory.snapshot(final).packed(SECRET) == expected
    # Only the record's last field (the lesson entry) was left to sign: not one event was read again.
    assert CountingHmac.read == len(store_pb.TrajectoryRecord(lesson_entry_id=lesson_entry).SerializeToString())
    trajectory.append(final)
    assert trajectory.snapshot().packed(SECRET) == pack(trajectory.record(), SECRET)


@pytest.mark.parametrize("signed", [0, 1, 3])
def test_the_events_not_yet_signed_are_signed_at_the_end(signed):
    trajectory = finished_trajectory("a paper owl")
    trajectory.signed_so_far = signed_as_it_came(trajectory, signed)
    assert trajectory.snapshot().packed(SECRET) == pack(trajectory.record(), SECRET)


def test_a_running_signature_that_does_not_fit_the_record_is_not_used():
    trajectory = finished_trajectory("a paper swan")
    # Signed under another secret: the record is signed whole under the store's.
    trajectory.signed_so_far = signed_as_it_came(trajectory, 3, secret=b"another secret")
    assert trajectory.snapshot().packed(SECRET) == pack(trajectory.record(), SECRET)
    # It signed an event the log never took (a stream stopped between encoding and appending).
    trajectory.signed_so_far = signed_as_it_came(trajectory, 2)
    trajectory.signed_so_far.add(pb.GenerateResponse(frame=pb.StepFrame(step_index=99)))
    assert trajectory.snapshot().packed(SECRET) == pack(trajectory.record(), SECRET)
    # It signed another request's events (the same events, another head).
    other = finished_trajectory("a paper crane")
    other.events = trajectory.events
    trajectory.signed_so_far = signed_as_it_came(other, len(other.events))
    assert trajectory.snapshot().packed(SECRET) == pack(trajectory.record(), SECRET)
