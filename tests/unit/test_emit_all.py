"""A step's frames reach their streams' loop in one wake-up, each job's in order; a closed loop cancels its jobs."""

import asyncio

from services.inference.diffusion.events import QueueEvent
from services.inference.diffusion.jobs import Job, Requester, emit_all
from services.inference.diffusion.spec import GenerationSpec

SPEC = GenerationSpec("a red circle", "", 1, 3, 7.5, 64, 64, "ddim", frozenset())


def test_one_wake_up_of_the_loop_delivers_every_job_s_events_in_order():
    loop = asyncio.new_event_loop()
    try:
        jobs = [Job(SPEC, Requester(f"s{i}"), loop) for i in range(3)]
        wakeups = []
        original = loop.call_soon_threadsafe
        loop.call_soon_threadsafe = lambda *args: wakeups.append(args) or original(*args)  # type: ignore[method-assign]
        emit_all([(job, QueueEvent(position=n, waiting=3)) for n in (1, 2) for job in jobs])
        loop.run_until_complete(asyncio.sleep(0))
        assert len(wakeups) == 1  # 6 events, one wake-up
        for job in jobs:
            assert [job.events.get_nowait().position for _ in range(2)] == [1, 2]
            assert job.events.empty() and not job.cancelled.is_set()
    finally:
        loop.close()


def test_a_closed_loop_cancels_the_jobs_that_had_events_for_it():
    loop = asyncio.new_event_loop()
    job = Job(SPEC, Requester("s"), loop)
    loop.close()
    emit_all([(job, QueueEvent(position=1, waiting=1))])
    assert job.cancelled.is_set()
    emit_all([])  # nothing to hand over: no loop is woken
