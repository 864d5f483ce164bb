"""The crowd hold: replays wait while a burst of calls arrives, all on one shared watcher."""

from __future__ import annotations

import asyncio
import time

from services.inference.classroom.crowd import CrowdHold


async def test_no_crowd_no_wait():
    crowd = CrowdHold(size=4, window_s=10.0, wait_s=10.0)
    for _ in range(3):  # one call short of a crowd
        crowd.arrived()
    tasks = len(asyncio.all_tasks())
    held = crowd.hold()
    try:
        held.send(None)  # runs to its end without waiting on anything
    except StopIteration:
        pass
    else:
        raise AssertionError("hold() waited with no crowd arriving")
    assert len(asyncio.all_tasks()) == tasks  # no watcher


async def test_a_crowd_holds_until_it_has_passed():
    crowd = CrowdHold(size=4, window_s=0.5, wait_s=10.0)
    for _ in range(4):
        crowd.arrived()
    assert crowd.left_s() > 0
    started = time.monotonic()
    await crowd.hold()
    waited = time.monotonic() - started
    assert crowd.left_s() == 0  # released only once the window had run out ...
    assert waited < 5.0  # ... and long before wait_s
    await asyncio.sleep(0)  # the watcher ends
    tasks = len(asyncio.all_tasks())
    await crowd.hold()  # the crowd has passed: no wait, no new watcher
    assert len(asyncio.all_tasks()) == tasks


async def test_many_held_readers_share_one_watcher():
    # A window far longer than the test: every hold starts inside it, however slow the machine.
    crowd = CrowdHold(size=4, window_s=60.0, wait_s=0.3)
    for _ in range(4):
        crowd.arrived()
    tasks_before = len(asyncio.all_tasks())
    holds = [asyncio.create_task(crowd.hold()) for _ in range(200)]
    try:
        await asyncio.sleep(0)
        assert len(asyncio.all_tasks()) == tasks_before + 200 + 1  # the holds and one watcher
        await asyncio.wait_for(asyncio.gather(*holds), 5.0)  # each ends on its own wait_s
        assert crowd.left_s() > 0  # still the same crowd: one watcher served all 200
    finally:
        crowd.close()


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
