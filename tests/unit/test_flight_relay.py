"""The claim on a running trajectory and its live stream, on a real Redis, without a model.

Two "replicas" here are two Lease owners sharing one store: one claims and
publishes, the other follows into a log of its own. Checked: one claim at a time,
renewed and let go only by its owner; a follower gets every event, in order, once,
whether it starts early or late; a follower whose owner falls silent takes the
claim over once the lease has run out, and knows the owner's work had started.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from services.common.api import pb, store_pb
from services.common.trajectories import Namespace, trajectory_id
from services.inference.trajectories import relay
from services.inference.trajectories.cache import TrajectoryStore
from services.inference.trajectories.lease import RENEW, Lease, lease_key, live_key, watch_key
from services.inference.trajectories.log import Trajectory

MODEL = SimpleNamespace(model_id="tiny", revision="r1")
STEPS = 4


def events() -> list[pb.GenerateResponse]:
    header = pb.GenerateResponse(header=pb.TrajectoryHeader(request=trajectory("").request, total_steps=STEPS))
    frames = [pb.GenerateResponse(frame=pb.StepFrame(step_index=i, total_steps=STEPS)) for i in range(STEPS)]
    return [header, *frames, pb.GenerateResponse(final=pb.FinalImage())]


def trajectory(key: str) -> Trajectory:
    return Trajectory(key, pb.GenerateRequest(prompt="a lantern", num_inference_steps=STEPS), MODEL)


async def stream_length(store: TrajectoryStore, key: str, length: int) -> None:
    """Until the trajectory's live stream holds `length` entries."""
    while await store.run(lambda client: client.xlen(live_key(key))) != length:
        await asyncio.sleep(0.01)


def run(coroutine):
    return asyncio.run(coroutine)


@pytest.fixture
def store(redis_server):
    return TrajectoryStore(redis_server.url, ad_hoc_ttl_s=60, secret=b"relay test")


def test_one_claim_at_a_time_renewed_and_let_go_only_by_its_owner(store, redis_server):
    mine, theirs = Lease(lease_s=1.0), Lease(lease_s=1.0)

    async def play():
        first = await store.find_or_claim("claims", mine)
        second = await store.find_or_claim("claims", theirs)
        renewed_by_them = await store.run(
            lambda c: c.eval(RENEW, 2, lease_key("claims"), watch_key("claims"), theirs.owner, 5000)
        )
        await relay.give_up(store, "claims", theirs, relay.End.CANCELLED)  # not theirs to let go
        still_mine = await store.find_or_claim("claims", theirs)
        await relay.give_up(store, "claims", mine, relay.End.CANCELLED)
        now_theirs = await store.find_or_claim("claims", theirs)
        await store.close()
        return first, second, renewed_by_them, still_mine, now_theirs

    first, second, renewed_by_them, still_mine, now_theirs = run(play())
    assert first == (None, True) and second == (None, False)
    assert renewed_by_them == [0, 1] and still_mine == (None, False)  # not renewed; and they watch it
    assert now_theirs == (None, True)


@pytest.mark.parametrize("late", [False, True])
def test_a_follower_gets_every_event_once_in_order(store, late):
    owner, follower = Lease(lease_s=0.6), Lease(lease_s=0.6)
    key = f"every-event-{late}"

    async def play():
        computing, following = trajectory(key), trajectory(key)
        assert (await store.find_or_claim(key, owner)) == (None, True)
        assert (await store.find_or_claim(key, follower)) == (None, False)  # it watches
        computing.queued(pb.QueueStatus(position=2, waiting=3))
        publisher = asyncio.create_task(relay.publish(store, computing, owner))
        reader = None if late else asyncio.create_task(relay.follow(store, following, follower))
        await stream_length(store, key, 1)  # the owner has renewed, seen the watcher, and sent the queue place
        for event in events():
            computing.append(event)
            await asyncio.sleep(0.01)
        computing.stored_in = Namespace.AD_HOC
        computing.finish()
        await publisher
        reader = reader or asyncio.create_task(relay.follow(store, following, follower))
        handover = await asyncio.wait_for(reader, 30)
        await store.close()
        return handover, following

    handover, following = run(play())
    assert handover is None and following.finished and following.error is None
    assert [e.SerializeToString() for e in following.events] == [e.SerializeToString() for e in events()]
    assert following.stored_in is Namespace.AD_HOC


def test_unwatched_an_owner_writes_only_its_end(store, redis_server):
    owner = Lease(lease_s=0.6)
    key = "unwatched"

    async def play():
        computing = trajectory(key)
        assert (await store.find_or_claim(key, owner)) == (None, True)
        publisher = asyncio.create_task(relay.publish(store, computing, owner))
        for event in events():
            computing.append(event)
        computing.finish()
        await publisher
        await store.close()

    run(play())
    with redis_server.client() as client:
        entries = client.xrange(live_key(key))
        assert [fields for _, fields in entries] == [{b"end": b"done", b"ns": b""}]  # no frame crossed to Redis
        assert not client.exists(lease_key(key))  # and the claim is let go


def test_a_follower_takes_over_when_its_owner_falls_silent(store):
    owner, follower = Lease(lease_s=0.6), Lease(lease_s=0.6)
    key = "silent-owner"

    async def play():
        computing, following = trajectory(key), trajectory(key)
        assert (await store.find_or_claim(key, owner)) == (None, True)
        assert (await store.find_or_claim(key, follower)) == (None, False)  # it watches
        publisher = asyncio.create_task(relay.publish(store, computing, owner))
        for event in events()[:3]:  # the header and two frames, then the owner dies
            computing.append(event)
        await stream_length(store, key, 3)  # (once it has seen the watcher, and sent them)
        publisher.cancel()
        handover = await asyncio.wait_for(relay.follow(store, following, follower), 30)
        await store.close()
        return handover, following

    handover, following = run(play())
    assert handover == relay.Handover(claimed=True, started=True)  # its own now, and not a new charge
    assert len(following.events) == 3 and not following.finished  # its readers keep what they were sent


def test_a_follower_finds_the_stored_trajectory_when_the_stream_is_gone(store, redis_server):
    owner, follower = Lease(lease_s=0.6), Lease(lease_s=0.6)
    request = trajectory("").request
    key = trajectory_id(request, "tiny", "r1")  # (a stored record must name its own key)
    record = store_pb.TrajectoryRecord(request=request, model_id="tiny", model_revision="r1", events=events())

    async def play():
        assert (await store.find_or_claim(key, owner)) == (None, True)
        following = trajectory(key)
        reader = asyncio.create_task(relay.follow(store, following, follower))
        await asyncio.sleep(0.05)
        # Its owner stored it and let go, but none of its events reached the stream.
        await store.save(record, Namespace.AD_HOC)
        await relay.give_up(store, key, owner, relay.End.DONE)
        handover = await asyncio.wait_for(reader, 30)
        await store.close()
        return handover, following

    handover, following = run(play())
    assert handover is None and following.finished and following.error is None
    assert len(following.events) == len(events())
