"""The stream state machine: one status at a time, in the order a stream really goes through them."""

from __future__ import annotations

import grpc
import pytest

from frontend.stream.progress import CLEARED_SENTENCE, FINAL, NEXT, Phase, StreamState, status_line
from services.common.api import pb


def status(source: int = pb.TRAJECTORY_SOURCE_COMPUTED) -> pb.GenerateResponse:
    return pb.GenerateResponse(status=pb.StreamStatus(source=source))


def queue(position: int) -> pb.GenerateResponse:
    return pb.GenerateResponse(queue=pb.QueueStatus(position=position, waiting=position))


def header(total: int = 4) -> pb.GenerateResponse:
    return pb.GenerateResponse(header=pb.TrajectoryHeader(total_steps=total))


def frame(index: int, total: int = 4) -> pb.GenerateResponse:
    return pb.GenerateResponse(frame=pb.StepFrame(step_index=index, total_steps=total))


def final() -> pb.GenerateResponse:
    return pb.GenerateResponse(final=pb.FinalImage())


def line(state: StreamState) -> str:
    return status_line(state.snapshot())


def test_a_computed_stream_goes_waiting_running_done():
    state = StreamState(total_steps=4)
    assert state.snapshot().phase == Phase.WAITING
    state.event(status())
    state.event(queue(3))
    assert line(state) == "Waiting for the model: 2 pictures ahead of yours."
    state.event(queue(1))
    assert line(state).startswith("You are next")
    state.event(header())
    state.event(frame(0))
    assert state.snapshot().phase == Phase.RUNNING
    assert line(state) == "The model is computing step 1 of 4."
    state.event(frame(1))
    assert line(state).startswith("The model is computing step 2 of 4, about ")  # a pace after two frames
    state.event(frame(2))
    state.event(frame(3))
    state.event(final())
    done = state.snapshot()
    assert done.phase == Phase.DONE and done.steps_done == 4
    assert "The model is computing" not in status_line(done)  # the running status does not outlive the run
    assert status_line(done).startswith("Done: 4 steps in ")


def test_a_pause_is_not_you_are_next_and_resumes_where_it_was():
    state = StreamState(total_steps=4)
    state.event(status())
    state.event(queue(1))
    state.paused(True)
    paused = line(state)
    assert state.snapshot().phase == Phase.PAUSED
    assert "paused" in paused and "You are next" not in paused
    state.event(queue(1))  # news while paused changes where it resumes, not what is shown
    assert state.snapshot().phase == Phase.PAUSED
    state.paused(False)
    assert line(state).startswith("You are next")
    state.event(header())
    state.event(frame(0))
    state.paused(True)
    assert "step 1 of 4" in line(state) and state.snapshot().phase == Phase.PAUSED
    state.event(frame(1))  # a step that was already on its way
    state.paused(False)
    assert state.snapshot().phase == Phase.RUNNING and line(state).startswith("The model is computing step 2 of 4")


def test_a_cleared_picture_says_only_that():
    state = StreamState(total_steps=4)
    state.event(status())
    state.event(queue(3))
    state.failed(CLEARED_SENTENCE, grpc.StatusCode.ABORTED)
    state.event(queue(2))  # a late position changes nothing once cleared
    snapshot = state.snapshot()
    assert snapshot.phase == Phase.CLEARED
    assert status_line(snapshot) == CLEARED_SENTENCE
    assert "ahead of yours" not in status_line(snapshot)


def test_a_failure_replaces_the_waiting_line():
    state = StreamState()
    state.failed("The image server cannot be reached right now.", grpc.StatusCode.UNAVAILABLE)
    assert state.snapshot().phase == Phase.FAILED
    assert line(state) == "The image server cannot be reached right now."
    state.event(status())  # nothing brings a failed stream back
    assert state.snapshot().phase == Phase.FAILED


def test_stop_shows_at_once_and_the_cancel_that_follows_stays_a_stop():
    state = StreamState(total_steps=4)
    state.event(status())
    state.event(header())
    state.event(frame(0))
    state.stop()
    assert line(state) == "You stopped the generation."
    state.failed("The generation was stopped.", grpc.StatusCode.CANCELLED)
    assert state.snapshot().phase == Phase.STOPPED


def test_a_reconnect_waits_again_and_a_cache_read_says_so():
    state = StreamState(total_steps=4)
    state.event(status())
    state.event(header())
    state.event(frame(0))
    state.reconnecting(1, 1.0, 5)
    assert state.snapshot().phase == Phase.WAITING and "Reconnecting in 1 s (attempt 1 of 5)" in line(state)
    state.event(status(pb.TRAJECTORY_SOURCE_CACHE))  # the restarted service had finished it
    assert line(state) == "Reading from the cache…"
    state.event(header())
    state.event(frame(0))
    assert line(state) == "Reading from the cache: step 1 of 4."


def test_an_expected_pace_says_how_long_before_starting():
    state = StreamState(total_steps=25, expected_step_s=0.2)
    assert line(state) == "Starting: 25 steps to compute, about 5 s."
    state.event(status())
    state.event(queue(2))
    assert line(state) == "Waiting for the model: 1 picture ahead of yours; then 25 steps, about 5 s."


def test_a_final_state_stops_the_clock():
    state = StreamState()
    state.event(status())
    state.event(final())
    first = state.snapshot().seconds
    assert state.snapshot().seconds == first


@pytest.mark.parametrize("phase", list(Phase))
def test_every_state_has_its_own_words(phase):
    """No two states read alike: each status line says which state it is in."""
    snapshot = StreamState(total_steps=4).snapshot()
    from dataclasses import replace

    words = status_line(replace(snapshot, phase=phase, message="the service's sentence"))
    others = {
        status_line(replace(snapshot, phase=other, message="another sentence")) for other in Phase if other != phase
    }
    assert words and words not in others
    assert (phase in FINAL) == (not NEXT[phase])
