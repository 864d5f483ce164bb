"""Trajectories in Redis and in flight: cache hits, single flight, slow readers, damaged entries."""

import itertools
import threading

import pytest

from services.common.api import pb, unbatch
from services.common.trajectories import FORMAT_VERSION, Namespace, redis_key, unpack
from tests.conftest import CACHE_SECRET
from tests.integration.helpers import ALL_PROBES, collect, request


def stats(stub) -> pb.GetServerStatsResponse:
    return stub.GetServerStats(pb.GetServerStatsRequest())


def events(stream):
    """Everything a stream carried but its status line, as bytes, for exact comparison."""
    return [stream.header.SerializeToString()] + [m.SerializeToString() for m in (*stream.frames, stream.final)]


def computed(stream):
    """What a stream computed, without its timings (which differ from run to run)."""
    frames = []
    for frame in stream.frames:
        copy = pb.StepFrame()
        copy.CopyFrom(frame)
        copy.ClearField("timings")
        frames.append(copy.SerializeToString())
    return stream.header.SerializeToString(), frames, stream.final.image.data


def test_miss_then_hit_streams_the_same_frames_with_no_model_work(stub, other_replica_stub):
    spec = request("a paper boat on a puddle", seed=101, num_inference_steps=4, width=64, height=64, include=ALL_PROBES)
    before = stats(stub)
    miss = collect(stub.Generate(spec))
    middle = stats(stub)
    hit = collect(stub.Generate(spec))
    after = stats(stub)

    assert miss.status.source == pb.TRAJECTORY_SOURCE_COMPUTED and not miss.status.cache_hit
    assert hit.status.source == pb.TRAJECTORY_SOURCE_CACHE and hit.status.cache_hit
    assert hit.status.trajectory_key == miss.status.trajectory_key
    assert middle.generations_started == before.generations_started + 1
    assert (after.generations_started, after.unet_calls) == (middle.generations_started, middle.unet_calls)
    assert after.cache_hits == middle.cache_hits + 1
    assert events(hit) == events(miss)

    # Served from Redis too, not only from the server's memory: by a replica that never computed it.
    from_redis = collect(other_replica_stub.Generate(spec))
    assert from_redis.status.cache_hit and events(from_redis) == events(miss)
    assert stats(stub).unet_calls == middle.unet_calls


def test_a_cached_replay_comes_in_a_few_growing_batches(stub):
    spec = request("a lighthouse in fog", seed=107, num_inference_steps=30, width=64, height=64, include=ALL_PROBES)
    miss = collect(stub.Generate(spec))
    messages = list(stub.Generate(spec))
    kinds = [[e.WhichOneof("event") for e in unbatch([m])] for m in messages]
    # The first message holds everything up to the first frame; the rest follow in batches.
    assert kinds[0] == ["status", "header", "frame"]
    assert all(m.WhichOneof("event") == "batch" for m in messages[:-1])
    sizes = [len(k) for k in kinds]
    assert len(messages) <= 6 < sum(sizes)  # 33 events in a handful of messages
    assert all(later >= earlier for earlier, later in itertools.pairwise(sizes[:-1]))  # the last holds the rest
    assert all(m.ByteSize() <= 2**20 + 2**16 for m in messages)
    assert events(collect(iter(messages))) == events(miss)


def test_a_reader_keeping_up_receives_single_events(stub):
    spec = request("a slow sunrise", seed=108, num_inference_steps=40, width=256, height=256, scheduler="euler")
    messages = list(stub.Generate(spec))  # computed while we read: each step arrives as it is made
    assert next(unbatch(messages)).WhichOneof("event") == "status"
    singles = sum(m.WhichOneof("event") == "frame" for m in messages)
    assert singles >= 30  # a batch only when the reader fell behind for a moment
    assert sum(1 for e in unbatch(messages) if e.WhichOneof("event") == "frame") == 40


def test_ad_hoc_entries_expire_and_the_include_mask_does_not_split_the_cache(stub, redis_server):
    spec = request("a glass of lemonade", seed=102, num_inference_steps=3, width=64, height=64)
    first = collect(stub.Generate(spec))
    with redis_server.client() as client:
        key = redis_key(Namespace.AD_HOC, first.status.trajectory_key)
        assert 0 < client.ttl(key) <= 7 * 24 * 3600
        assert not client.exists(redis_key(Namespace.LESSON, first.status.trajectory_key))
    # An empty mask is the server's defaults: here (a small VAE) they include the decoded guess, which is
    # part of a trajectory's identity; a reader wanting the previews of that trajectory names it too.
    previews_only = request(
        "a glass of lemonade", seed=102, num_inference_steps=3, width=64, height=64,
        include=["latent_preview", "decoded_x0_preview"],
    )  # fmt: skip
    second = collect(stub.Generate(previews_only))
    assert second.status.cache_hit
    assert not second.frames[0].HasField("latent") and second.frames[0].HasField("latent_preview")
    assert second.frames[0].latent_preview == first.frames[0].latent_preview
    assert list(second.header.request.include.paths) == ["decoded_x0_preview", "latent_preview"]


def test_eight_identical_requests_share_one_model_run(stub):
    spec = request("a windmill in a tulip field", seed=103, num_inference_steps=12, width=256, height=256)
    before = stats(stub)
    streams: list = [None] * 8
    start = threading.Barrier(8)

    def read(i):
        start.wait()
        streams[i] = collect(stub.Generate(spec))

    threads = [threading.Thread(target=read, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    after = stats(stub)

    assert after.generations_started == before.generations_started + 1
    assert after.denoising_steps - before.denoising_steps == 12
    sources = sorted(s.status.source for s in streams)
    assert sources.count(pb.TRAJECTORY_SOURCE_COMPUTED) == 1
    assert after.single_flight_joins - before.single_flight_joins == sources.count(pb.TRAJECTORY_SOURCE_JOINED)
    for stream in streams:
        assert [f.step_index for f in stream.frames] == list(range(12))
        assert events(stream) == events(streams[0])


def test_a_late_reader_is_replayed_what_it_missed(stub):
    spec = request("a snail on a mushroom", seed=104, num_inference_steps=20, width=256, height=256)
    before = stats(stub)
    first = unbatch(stub.Generate(spec))
    early = []
    for response in first:
        early.append(response)
        if response.WhichOneof("event") == "frame" and response.frame.step_index == 3:
            break
    late = collect(stub.Generate(spec))
    rest = list(first)
    assert late.status.source == pb.TRAJECTORY_SOURCE_JOINED
    assert [f.step_index for f in late.frames] == list(range(20))
    first_frames = [r.frame for r in early + rest if r.WhichOneof("event") == "frame"]
    assert [f.SerializeToString() for f in first_frames] == [f.SerializeToString() for f in late.frames]
    assert stats(stub).generations_started == before.generations_started + 1


def test_a_reader_that_stops_reading_does_not_hold_up_the_others(stub):
    spec = request("a kite over the sea", seed=105, num_inference_steps=15, width=256, height=256, include=ALL_PROBES)
    stalled = unbatch(stub.Generate(spec))
    assert next(stalled).WhichOneof("event") == "status"  # then it reads nothing more for a while
    other = request("a kite over the sea", seed=106, num_inference_steps=15, width=256, height=256)
    joined = collect(stub.Generate(spec))  # the same trajectory, read to the end
    different = collect(stub.Generate(other))  # another request, queued behind it on the runner
    assert len(joined.frames) == 15 and len(different.frames) == 15
    rest = list(stalled)  # the stalled reader still gets everything, at its own pace
    assert sum(r.WhichOneof("event") == "frame" for r in rest) == 15


@pytest.mark.parametrize("damage", ["flip a byte", "old format", "truncated"])
def test_a_damaged_entry_is_dropped_and_recomputed(stub, other_replica_stub, redis_server, damage):
    seed = {"flip a byte": 107, "old format": 108, "truncated": 109}[damage]
    spec = request("a teapot shaped like a whale", seed=seed, num_inference_steps=3, width=64, height=64)
    original = collect(stub.Generate(spec))
    key = redis_key(Namespace.AD_HOC, original.status.trajectory_key)
    from services.common.api import store_pb

    with redis_server.client() as client:
        value = client.get(key)
        stored = store_pb.StoredTrajectory.FromString(value)
        if damage == "flip a byte":
            payload = bytearray(stored.payload)
            payload[len(payload) // 2] ^= 0xFF
            stored.payload = bytes(payload)
        elif damage == "old format":
            stored.format_version = FORMAT_VERSION - 1
        client.set(key, value[: len(value) // 2] if damage == "truncated" else stored.SerializeToString())
    # Read by a replica that has no copy in memory: it can only find the damaged entry.
    before = stats(other_replica_stub)
    again = collect(other_replica_stub.Generate(spec))
    after = stats(other_replica_stub)
    assert again.status.source == pb.TRAJECTORY_SOURCE_COMPUTED  # never streamed from the damaged entry
    assert after.generations_started == before.generations_started + 1
    assert after.cache_entries_dropped == before.cache_entries_dropped + 1
    assert computed(again) == computed(original)
    with redis_server.client() as client:
        assert unpack(client.get(key), CACHE_SECRET.encode()).events  # stored whole again
