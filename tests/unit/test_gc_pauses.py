"""The service's heap after start-up is frozen, and every garbage collection's pause is measured."""

from __future__ import annotations

import gc

from services.inference.metrics import GC_PAUSE_BUCKETS, GcPauses, Metrics
from services.inference.server import freeze_startup_heap


def test_frozen_heap_is_out_of_the_collectors_sight():
    gc.unfreeze()
    gc.collect()  # what earlier tests left as garbage is not the heap's: count only what lives
    tracked = len(gc.get_objects())
    try:
        freeze_startup_heap()
        assert gc.get_freeze_count() > 0.9 * tracked - 1000
        assert len(gc.get_objects()) < 1000  # a full collection now walks almost nothing
    finally:
        gc.unfreeze()


def test_gc_pauses_are_counted_by_generation():
    pauses = GcPauses()
    pauses.start()
    try:
        gc.collect()
        gc.collect(0)
    finally:
        pauses.stop()
    assert sum(pauses.counts[2]) >= 1 and sum(pauses.counts[0]) >= 1
    assert pauses.sums[2] > 0
    counted = sum(pauses.counts[2])
    gc.collect()  # stopped: no longer counted
    assert sum(pauses.counts[2]) == counted


def test_gc_pauses_are_a_prometheus_histogram():
    metrics = Metrics()
    gc_pauses = metrics.gc_pauses
    gc_pauses.counts[2][0] = 3  # three pauses of at most the first bucket
    gc_pauses.counts[2][-1] = 1  # one longer than the last
    gc_pauses.sums[2] = 2.5
    value = metrics.registry.get_sample_value
    first, last = (str(b) for b in (GC_PAUSE_BUCKETS[0], GC_PAUSE_BUCKETS[-1]))
    assert value("classroom_gc_pause_seconds_bucket", {"generation": "2", "le": first}) == 3
    assert value("classroom_gc_pause_seconds_bucket", {"generation": "2", "le": last}) == 3
    assert value("classroom_gc_pause_seconds_bucket", {"generation": "2", "le": "+Inf"}) == 4
    assert value("classroom_gc_pause_seconds_count", {"generation": "2"}) == 4
    assert value("classroom_gc_pause_seconds_sum", {"generation": "2"}) == 2.5
    assert value("classroom_gc_pause_seconds_count", {"generation": "0"}) == 0
