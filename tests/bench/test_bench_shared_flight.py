"""Benchmark: what one replica pays for sharing its trajectories with other replicas (Shapes, real Redis).

With `shared_flight` on, a trajectory computed here is claimed in Redis (in the cache
lookup's own round trip) and each batch of its events goes to a capped stream, with the
claim renewed in the same round trip. Alone on its Redis, a replica pays that for
nothing: this measures how much, against `shared_flight` off, on the same server
settings. 25-step pictures at Shapes' 64 px, each a new request (a new seed), read to
the end; the two settings take turns, so machine noise falls on both. Printed: median
seconds a picture and a step, the difference per step, and Redis round trips and
commands per picture.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

from services.inference.settings import InferenceSettings
from tests.integration.helpers import collect, request
from tests.support.servers import ServerThread, running_server, stub_for

PICTURES = int(os.environ.get("BENCH_REPETITIONS", "12"))
STEPS = 25
PROBES = ["latent_preview", "predicted_x0_preview", "latent", "predicted_x0", "noise_predictions"]


def counting_round_trips(server: ServerThread) -> Callable[[], int]:
    """Count the store's Redis round trips (each `run`, lookup, save) from now on."""
    store = server.classroom.store
    counted = [0]
    for name in ("run", "find_or_claim", "load", "save"):
        original = getattr(store, name)

        def counting(*args, _original=original, **kwargs):
            counted[0] += 1
            return _original(*args, **kwargs)

        setattr(store, name, counting)
    return lambda: counted[0]


def test_shared_flight_costs_a_lone_replica_little(redis_server):
    base = InferenceSettings(model="shapes", host="127.0.0.1", grpc_port=0, metrics_port=0,
                             redis_url=redis_server.url, rate_limit_per_minute=0, text_rate_limit_per_minute=0,
                             cache_secret="the benchmark's secret")  # fmt: skip
    seconds: dict[bool, list[float]] = {True: [], False: []}
    seed = int(time.time())  # new requests every run: never a cache hit
    with (
        running_server(base.model_copy(update={"shared_flight": True})) as shared,
        running_server(base.model_copy(update={"shared_flight": False})) as alone,
    ):
        servers = {True: shared, False: alone}
        counts = {on: counting_round_trips(server) for on, server in servers.items()}
        stubs = {on: stub_for(server.address) for on, server in servers.items()}
        for _, stub in stubs.values():  # warm up
            collect(stub.Generate(request("a green star", seed=seed, num_inference_steps=STEPS, include=PROBES)))
            seed += 1
        trips = {on: -count() for on, count in counts.items()}
        commands = {True: 0, False: 0}
        for picture in range(PICTURES):
            for on in (True, False) if picture % 2 else (False, True):  # turns, so machine noise falls on both
                stub = stubs[on][1]
                spec = request("a red circle on the left", seed=seed, num_inference_steps=STEPS, include=PROBES)
                seed += 1
                with redis_server.client() as client:
                    before = client.info("stats")["total_commands_processed"]
                started = time.perf_counter()
                collect(stub.Generate(spec))
                seconds[on].append(time.perf_counter() - started)
                with redis_server.client() as client:
                    commands[on] += client.info("stats")["total_commands_processed"] - before - 1
        trips = {on: trips[on] + count() for on, count in counts.items()}
        for channel, _ in stubs.values():
            channel.close()
    shared_s, alone_s = statistics.median(seconds[True]), statistics.median(seconds[False])
    print(
        f"\nshared flight on a lone replica, {PICTURES} pictures of {STEPS} steps at 64 px each:"
        f"\n  on : {shared_s:.3f} s a picture, {shared_s / STEPS * 1000:.2f} ms a step,"
        f" {trips[True] / PICTURES:.1f} Redis round trips and {commands[True] / PICTURES:.1f} commands a picture"
        f"\n  off: {alone_s:.3f} s a picture, {alone_s / STEPS * 1000:.2f} ms a step,"
        f" {trips[False] / PICTURES:.1f} Redis round trips and {commands[False] / PICTURES:.1f} commands a picture"
        f"\n  difference: {(shared_s - alone_s) / STEPS * 1000:+.2f} ms a step ({shared_s / alone_s - 1:+.1%})"
    )
    # One round trip per batch of events at most (each step's frame, the header, the final, the end).
    assert trips[True] / PICTURES <= STEPS + 6
