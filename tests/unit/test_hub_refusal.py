"""Single flight when the first request is refused: the requests that joined it try on their own.

The cache lookup is the window in which identical requests join a trajectory
not yet started. Here the store is a fake whose lookup waits until the test
lets it go, and the runner a fake that refuses one student, so the race is
played out deterministically.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

from services.common.api import pb
from services.inference.diffusion.jobs import Requester
from services.inference.diffusion.spec import GenerationSpec
from services.inference.metrics import Metrics
from services.inference.refusals import StudentBusy
from services.inference.trajectories.hub import TrajectoryHub

SPEC = GenerationSpec("a lantern", "", 1, 2, 7.5, 64, 64, "lms", frozenset({"latent_preview"}))


class SlowStore:
    """A cache with nothing in it, whose lookups wait for `release`."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.lookups = 0

    async def load(self, key: str) -> None:
        self.lookups += 1
        await self.release.wait()


class OneBusyStudent:
    """A runner that refuses the student called "busy" and accepts anyone else."""

    def __init__(self) -> None:
        self.submitted: list[str] = []

    def submit(self, spec: GenerationSpec, requester: Requester) -> SimpleNamespace:
        if requester.student == "busy":
            raise StudentBusy
        self.submitted.append(requester.student)
        return SimpleNamespace(events=asyncio.Queue())


async def race() -> tuple[BaseException | None, int, list[str], int]:
    store, runner = SlowStore(), OneBusyStudent()
    model = SimpleNamespace(model_id="tiny", revision="r1")
    with ThreadPoolExecutor(1) as encoder:

        async def admit(spec, requester, lesson):
            return runner.submit(spec, requester)

        hub = TrajectoryHub(model, runner, store, encoder, 2**20, Metrics(), admit)
        first = asyncio.create_task(hub.open(SPEC, Requester("busy"), hub.key(SPEC)))
        await asyncio.sleep(0.01)  # the first request is now looking in the cache
        second = asyncio.create_task(hub.open(SPEC, Requester("free"), hub.key(SPEC)))
        await asyncio.sleep(0.01)  # the second has joined it
        assert store.lookups == 1
        store.release.set()
        refusal = None
        try:
            await first
        except StudentBusy as error:
            refusal = error
        trajectory, source = await second
        await hub.close()
        if trajectory.pump is not None:
            trajectory.pump.cancel()
        return refusal, source, runner.submitted, store.lookups


def test_a_request_that_joined_a_refused_start_runs_on_its_own():
    refusal, source, submitted, lookups = asyncio.run(race())
    assert isinstance(refusal, StudentBusy)  # the first student's own answer
    assert source == pb.TRAJECTORY_SOURCE_COMPUTED and submitted == ["free"]  # the second one's work went ahead
    assert lookups == 2  # it looked in the cache again, on its own behalf
