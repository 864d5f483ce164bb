"""A finished trajectory is stored before its readers see the picture, in the namespace a lesson's mark asks for.

Storing waits (the store's thread, then Redis): a lesson that asks for the picture in
that window has it kept as the lesson's, and a reader who leaves once the picture is
made leaves it stored, not stopped. The store here is a fake whose saves wait until
the test lets them go, so each race is played out deterministically.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np
import pytest

from services.common.api import pb
from services.common.trajectories import Namespace
from services.inference.diffusion.events import FinalEvent
from services.inference.diffusion.jobs import Requester
from services.inference.diffusion.spec import GenerationSpec
from services.inference.metrics import Metrics
from services.inference.trajectories import frames
from services.inference.trajectories.hub import TrajectoryHub
from services.inference.trajectories.log import Trajectory
from services.inference.trajectories.record import RecordParts, SignedSoFar

SPEC = GenerationSpec("a lantern", "", 1, 2, 7.5, 64, 64, "lms", frozenset({"latent_preview"}))
LESSON = "lanterns/one"
PICTURE = FinalEvent(np.zeros((8, 8, 3), np.uint8), False, 0.0, 0.0, 0.0, 0.0, 0.0)


class GatedStore:
    """An empty cache whose saves wait for `gate`; each save is noted with what the log held then."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.saving = asyncio.Event()
        self.saves: list[tuple[Namespace, str, bool, int]] = []  # namespace, lesson entry, picture in the log, events
        self.configured = True
        self.secret = b"storing test"  # (each event is signed for the store as it is encoded)

    def signing(self, request: pb.GenerateRequest, model_id: str, revision: str) -> SignedSoFar:
        return SignedSoFar(self.secret, request, model_id, revision)  # (nothing staged: no Redis here)

    async def load(self, key: str) -> None:
        return None

    async def save(self, parts: RecordParts, namespace: Namespace) -> bool:
        self.saves.append((namespace, parts.lesson_entry, self.trajectory.made, len(parts.events)))
        self.saving.set()
        await self.gate.wait()
        return True


class Runner:
    def __init__(self) -> None:
        self.cancelled: list[object] = []

    def cancel(self, job: object) -> None:
        self.cancelled.append(job)


def encoded(event: object, model: object) -> pb.GenerateResponse:
    """Stands in for `frames.encode`: the header for anything but the picture."""
    if isinstance(event, FinalEvent):
        return pb.GenerateResponse(final=pb.FinalImage(image=pb.Image(data=b"picture")))
    return pb.GenerateResponse(header=pb.TrajectoryHeader(total_steps=2))


async def a_picture_being_stored(store: GatedStore, runner: Runner, encoder) -> tuple[TrajectoryHub, Trajectory]:
    """A hub whose one trajectory has made its picture and waits in its first save."""
    model = SimpleNamespace(model_id="tiny", revision="r1")
    job = SimpleNamespace(events=asyncio.Queue(), requester=Requester("ana"), spec=SPEC)

    async def admit(spec, requester, lesson):
        return job

    hub = TrajectoryHub(model, runner, store, encoder, 2**30, Metrics(), admit)
    trajectory, source = await hub.open(SPEC, Requester("ana"), hub.key(SPEC))
    assert source == pb.TRAJECTORY_SOURCE_COMPUTED
    store.trajectory = trajectory
    job.events.put_nowait("the header")
    job.events.put_nowait(PICTURE)
    await asyncio.wait_for(store.saving.wait(), 10)
    return hub, trajectory


@pytest.fixture
def encode(monkeypatch):
    monkeypatch.setattr(frames, "encode", encoded)
    with ThreadPoolExecutor(1) as encoder:
        yield encoder


def test_a_lesson_asking_while_it_is_stored_keeps_it_as_the_lesson_s(encode):
    async def play():
        store, runner = GatedStore(), Runner()
        hub, trajectory = await a_picture_being_stored(store, runner, encode)
        assert not trajectory.made  # readers have no picture until it is stored
        joined, source = await hub.open(SPEC, Requester("precompute"), hub.key(SPEC), lesson_entry=LESSON)
        assert joined is trajectory and source == pb.TRAJECTORY_SOURCE_JOINED
        store.gate.set()
        await asyncio.wait_for(trajectory.wait(), 10)
        hub.release(trajectory)
        hub.release(joined)
        return store.saves, trajectory

    saves, trajectory = asyncio.run(play())
    # Stored as an ordinary picture (the mark came too late for that save), then again as the lesson's,
    # both before any reader had the picture.
    assert saves == [(Namespace.AD_HOC, "", False, 2), (Namespace.LESSON, LESSON, False, 2)]
    assert trajectory.stored_in is Namespace.LESSON and trajectory.error is None


def test_a_lesson_asking_before_the_picture_is_stored_once_as_the_lesson_s(encode):
    async def play():
        store, runner = GatedStore(), Runner()
        model = SimpleNamespace(model_id="tiny", revision="r1")
        job = SimpleNamespace(events=asyncio.Queue(), requester=Requester("precompute"), spec=SPEC)

        async def admit(spec, requester, lesson):
            return job

        hub = TrajectoryHub(model, runner, store, encode, 2**30, Metrics(), admit)
        trajectory, _ = await hub.open(SPEC, Requester("precompute"), hub.key(SPEC), lesson_entry=LESSON)
        store.trajectory = trajectory
        store.gate.set()
        job.events.put_nowait("the header")
        job.events.put_nowait(PICTURE)
        await asyncio.wait_for(trajectory.wait(), 10)
        return store.saves, trajectory

    saves, trajectory = asyncio.run(play())
    assert saves == [(Namespace.LESSON, LESSON, False, 2)]
    assert trajectory.stored_in is Namespace.LESSON


def test_a_reader_leaving_once_the_picture_is_made_leaves_it_stored(encode):
    async def play():
        store, runner = GatedStore(), Runner()
        hub, trajectory = await a_picture_being_stored(store, runner, encode)
        hub.release(trajectory)  # the last reader goes (a closed tab, a client that stops at the picture)
        store.gate.set()
        await asyncio.wait_for(trajectory.wait(), 10)
        again, source = await hub.open(SPEC, Requester("ben"), hub.key(SPEC))
        return store.saves, trajectory, runner.cancelled, again, source

    saves, trajectory, cancelled, again, source = asyncio.run(play())
    assert saves == [(Namespace.AD_HOC, "", False, 2)] and trajectory.stored_in is Namespace.AD_HOC
    assert trajectory.error is None and trajectory.made and cancelled == []
    assert again is trajectory and source == pb.TRAJECTORY_SOURCE_CACHE  # remembered, whole
