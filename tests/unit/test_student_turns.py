"""A student's turn (classroom/turns.py) on a real Redis: free on every replica before the picture arrives."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from services.common.api import pb
from services.inference.classroom.turns import StudentTurns
from services.inference.refusals import StudentBusy
from services.inference.trajectories.cache import TrajectoryStore
from services.inference.trajectories.log import Trajectory


def store(url: str) -> TrajectoryStore:
    return TrajectoryStore(url, ad_hoc_ttl_s=60, secret=b"the class's secret", retry_after_s=0.1)


def test_a_turn_is_given_back_as_the_picture_is_made_not_after_its_stream_ends(fresh_redis):
    redis = fresh_redis("turns")
    a, b = StudentTurns(store(redis.url)), StudentTurns(store(redis.url))  # two replicas

    async def run() -> None:
        model = SimpleNamespace(model_id="tiny", revision="r1")  # all a log reads of its model
        trajectory = Trajectory("k1", pb.GenerateRequest(prompt="a blue square"), model)  # type: ignore[arg-type]
        assert await a.take("s-dan")
        a.hold_for("s-dan", trajectory)
        with pytest.raises(StudentBusy):  # the picture runs on A: B refuses Dan's next one
            await b.take("s-dan")
        trajectory.append(pb.GenerateResponse(frame=pb.StepFrame()))
        await a.picture_ended(trajectory)  # not made yet: the turn stays
        with pytest.raises(StudentBusy):
            await b.take("s-dan")
        trajectory.append(pb.GenerateResponse(final=pb.FinalImage()))
        assert trajectory.made and not trajectory.finished  # the picture is made, not yet stored
        await a.picture_ended(trajectory)  # what the stream awaits before it sends the picture
        assert await b.take("s-dan")  # so Dan's next request, on another replica, is let in at once
        await a.close(), await b.close()

    asyncio.run(run())


def test_a_replica_that_closes_gives_back_every_turn_it_holds(fresh_redis):
    redis = fresh_redis("turns-close")
    a, b = StudentTurns(store(redis.url)), StudentTurns(store(redis.url))  # two replicas

    async def run() -> None:
        model = SimpleNamespace(model_id="tiny", revision="r1")
        pictures = [Trajectory(f"k{i}", pb.GenerateRequest(prompt="a red circle"), model) for i in range(3)]  # type: ignore[arg-type]
        students = ["s-ada", "s-ben", "s-cy"]
        for student, trajectory in zip(students, pictures, strict=True):
            assert await a.take(student)
            a.hold_for(student, trajectory)  # their pictures run on A, which is drained
        with pytest.raises(StudentBusy):
            await b.take("s-ada")
        await a.close()
        for student in students:  # so their next pictures, on B, are let in at once (not after the lease)
            assert await b.take(student)
        await b.close()

    asyncio.run(run())
