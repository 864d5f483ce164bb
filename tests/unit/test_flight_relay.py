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
        await relay.give_up(store, trajectory("claims"), theirs, relay.End.CANCELLED)  # not theirs to let go
        still_mine = await store.find_or_claim("claims", theirs)
        await relay.give_up(store, trajectory("claims"), mine, relay.End.CANCELLED)
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
        assert [set(fields) for _, fields in entries] == [{b"end", b"ns", b"s"}]  # no frame crossed to Redis
        assert entries[0][1][b"end"] == b"done"
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
        await relay.give_up(store, following, owner, relay.End.DONE)
        handover = await asyncio.wait_for(reader, 30)
        await store.close()
        return handover, following

    handover, following = run(play())
    assert handover is None and following.finished and following.error is None
    assert len(following.events) == len(events())


def test_a_refused_start_is_started_again_as_the_followers_own_request(store):
    owner, follower = Lease(lease_s=0.6), Lease(lease_s=0.6)
    key = "refused-start"

    async def play():
        assert (await store.find_or_claim(key, owner)) == (None, True)
        assert (await store.find_or_claim(key, follower)) == (None, False)
        reader = asyncio.create_task(relay.follow(store, trajectory(key), follower))
        await relay.give_up(store, trajectory(key), owner, relay.End.REFUSED)  # (the owner's student was rate limited)
        handover = await asyncio.wait_for(reader, 30)
        await store.close()
        return handover

    # The follower holds the claim at once, and its replica charges its own student: nothing had started.
    assert run(play()) == relay.Handover(claimed=True, started=False)


def test_a_forged_stream_is_never_followed(store, redis_server):
    """A claim and a whole trajectory's entries, planted with only the Redis password, are never read.

    Unsigned, or signed with another secret: the follower reads none of it (nothing its replica
    could store as a lesson), and computes the picture itself, unclaimed.
    """
    follower = Lease(lease_s=0.6)
    forger = TrajectoryStore(redis_server.url, ad_hoc_ttl_s=60, secret=b"what an attacker guessed")

    async def forged(key: str, signer: TrajectoryStore | None) -> tuple[relay.Handover | None, Trajectory]:
        with redis_server.client() as client:
            client.set(lease_key(key), "forger", px=60_000)
            entries = [{b"i": str(i).encode(), b"e": event.SerializeToString()} for i, event in enumerate(events())]
            for fields in [*entries, {b"end": b"done", b"ns": b"lesson"}]:
                client.xadd(live_key(key), relay._signed(signer, key, fields) if signer else fields)
        following = trajectory(key)
        assert (await store.find_or_claim(key, follower)) == (None, False)
        return await asyncio.wait_for(relay.follow(store, following, follower), 30), following

    async def play() -> list[tuple[relay.Handover | None, Trajectory]]:
        outcomes = [await forged("forged-unsigned", None), await forged("forged-other-secret", forger)]
        await store.close()
        return outcomes

    for handover, following in run(play()):
        assert handover == relay.Handover(claimed=False, started=True)  # computed here, not followed
        assert following.events == [] and not following.finished and following.stored_in is None


def test_an_entry_moved_from_another_trajectory_is_not_read(store, redis_server):
    """A genuine entry, signed for another trajectory's key (or another event number), fails its check."""
    follower = Lease(lease_s=0.6)
    key = "moved-entry"

    async def play() -> relay.Handover | None:
        with redis_server.client() as client:
            client.set(lease_key(key), "someone", px=60_000)
            header = {b"i": b"0", b"e": events()[0].SerializeToString()}
            client.xadd(live_key(key), relay._signed(store, "another-trajectory", header))
        assert (await store.find_or_claim(key, follower)) == (None, False)
        handover = await asyncio.wait_for(relay.follow(store, trajectory(key), follower), 30)
        await store.close()
        return handover

    assert run(play()) == relay.Handover(claimed=False, started=True)


def test_a_stream_always_has_an_expiry(store, redis_server):
    """The first events, written when the owner learns it is watched, create the stream with its expiry."""
    owner, follower = Lease(lease_s=0.6), Lease(lease_s=0.6)
    key = "stream-expiry"

    async def play() -> None:
        computing = trajectory(key)
        for event in events()[:3]:
            computing.append(event)
        assert (await store.find_or_claim(key, owner)) == (None, True)
        assert (await store.find_or_claim(key, follower)) == (None, False)  # it watches
        publisher = asyncio.create_task(relay.publish(store, computing, owner))
        await stream_length(store, key, 3)
        publisher.cancel()
        await asyncio.gather(publisher, return_exceptions=True)
        await store.close()

    run(play())
    with redis_server.client() as client:
        assert client.pttl(live_key(key)) > 0  # (-1: kept for ever)


def test_giving_up_keeps_every_event_for_a_late_reader(store, redis_server):
    owner = Lease(lease_s=0.6)
    key = "long-stream"
    long = Trajectory(key, pb.GenerateRequest(prompt="a lantern", num_inference_steps=100), MODEL)
    with redis_server.client() as client:
        for index in range(250):  # a 100-step picture's events, and the queue places before them
            client.xadd(live_key(key), {b"i": str(index).encode(), b"e": b""})

    async def play() -> None:
        assert (await store.find_or_claim(key, owner, takeover=True)) == (None, True)
        await relay.give_up(store, long, owner, relay.End.CANCELLED)
        await store.close()

    run(play())
    with redis_server.client() as client:
        assert client.xlen(live_key(key)) == 251
