"""The crowd hold: replays wait while a burst of calls arrives, all on one shared watcher."""

from __future__ import annotations

import asyncio
import time

from services.inference.crowd import CrowdHold


async def test_no_crowd_no_wait():
    crowd = CrowdHold(size=4, window_s=10.0, wait_s=10.0)
    for _ in range(3):  # one call short of a crowd
        crowd.arrived()
    tasks = len(asyncio.all_tasks())
    started = time.monotonic()
    await crowd.hold()
    assert time.monotonic() - started < 1.0
    assert len(asyncio.all_tasks()) == tasks  # no watcher


async def test_a_crowd_holds_until_it_has_passed():
    crowd = CrowdHold(size=4, window_s=0.3, wait_s=10.0)
    for _ in range(4):
        crowd.arrived()
    assert crowd.left_s() > 0
    started = time.monotonic()
    await crowd.hold()
    waited = time.monotonic() - started
    assert 0.2 <= waited < 5.0  # released when the window ran out, long before wait_s
    assert crowd.left_s() == 0
    await asyncio.sleep(0)  # the watcher ends
    tasks = len(asyncio.all_tasks())
    await crowd.hold()  # the crowd has passed: no wait, no new watcher
    assert len(asyncio.all_tasks()) == tasks


async def test_many_held_readers_share_one_watcher():
    crowd = CrowdHold(size=4, window_s=0.2, wait_s=10.0)
    for _ in range(4):
        crowd.arrived()
    tasks_before = len(asyncio.all_tasks())
    holds = [asyncio.create_task(crowd.hold()) for _ in range(200)]
    await asyncio.sleep(0)
    assert len(asyncio.all_tasks()) == tasks_before + 200 + 1  # the holds and one watcher
    await asyncio.wait_for(asyncio.gather(*holds), 5.0)


async def test_a_crowd_that_keeps_coming_holds_each_message_at_most_wait_s():
    crowd = CrowdHold(size=4, window_s=5.0, wait_s=0.2)
    for _ in range(4):
        crowd.arrived()

    async def keep_arriving() -> None:
        while True:
            crowd.arrived()
            await asyncio.sleep(0.01)

    arrivals = asyncio.create_task(keep_arriving())
    try:
        started = time.monotonic()
        await crowd.hold()
        waited = time.monotonic() - started
        assert 0.15 <= waited < 3.0
        assert crowd.left_s() > 0  # still a crowd: the hold ended on its own limit
    finally:
        arrivals.cancel()
        crowd.close()
