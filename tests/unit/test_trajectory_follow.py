"""A reader never misses the end: events appended while its last message was being sent still reach it."""

from __future__ import annotations

from types import SimpleNamespace

from services.common.api import pb, unbatch
from services.inference.trajectories.log import Trajectory

MODEL = SimpleNamespace(model_id="tiny", revision="r1")


def events_in(message: bytes) -> list[str]:
    return [e.WhichOneof("event") for e in unbatch([pb.GenerateResponse.FromString(message)])]


async def test_a_final_image_appended_while_a_message_is_sent_still_reaches_the_reader():
    trajectory = Trajectory("key", pb.GenerateRequest(prompt="a red circle"), MODEL)  # type: ignore[arg-type]
    trajectory.append(pb.GenerateResponse(header=pb.TrajectoryHeader(total_steps=1)))
    follow = trajectory.follow(frozenset(), pb.GenerateResponse(status=pb.StreamStatus()))
    first, _ = await anext(follow)  # the reader is now suspended, sending this message
    assert events_in(first) == ["status", "header"]
    # Meanwhile the last frame and the final image arrive, and the trajectory finishes (no store to wait for).
    trajectory.append(pb.GenerateResponse(frame=pb.StepFrame(step_index=0)))
    trajectory.append(pb.GenerateResponse(final=pb.FinalImage()))
    trajectory.finish()
    rest = [kind async for message, _ in follow for kind in events_in(message)]
    assert rest == ["frame", "final"]
