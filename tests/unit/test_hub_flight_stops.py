"""The hub across replicas on a real Redis, without a model: work stopped for one reader's reason, or taken over.

A fake scheduler hands out jobs whose events the test sends; a second "replica"
is a Lease of its own on the same store, following the trajectory's live stream.
Checked: a job stopped because its requester's name was removed ends with that
sentence only for that requester, while other readers have it computed on here or
take it over elsewhere; a takeover whose last reader leaves while it is being
admitted gives its claim back; a followed trajectory kept as a lesson is the
owner's stored copy, never the events relayed to the follower.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

from services.common.api import pb, store_pb
from services.common.trajectories import Namespace, redis_key, unpack
from services.inference.diffusion.events import ErrorEvent
from services.inference.diffusion.jobs import Requester
from services.inference.diffusion.spec import GenerationSpec
from services.inference.metrics import Metrics
from services.inference.trajectories import relay
from services.inference.trajectories.cache import TrajectoryStore
from services.inference.trajectories.hub import TrajectoryHub
from services.inference.trajectories.lease import Lease, lease_key
from services.inference.trajectories.log import Trajectory

STEPS = 4
SENTENCE = "Your teacher removed your name from the class, so this picture was stopped."
SECRET = b"hub flight test"


def spec(prompt: str) -> GenerationSpec:
    return GenerationSpec(prompt, "", 1, STEPS, 7.5, 64, 64, "lms", frozenset({"latent_preview"}))


class Scheduler:
    """Jobs whose events the test sends; stopping one sends its readers the sentence, as the real queue does."""

    def __init__(self) -> None:
        self.jobs: list[SimpleNamespace] = []

    def submit(self, spec: GenerationSpec, requester: Requester) -> SimpleNamespace:
        job = SimpleNamespace(spec=spec, requester=requester, events=asyncio.Queue())
        self.jobs.append(job)
        return job

    def cancel(self, job: SimpleNamespace) -> None:
        pass

    def stop_jobs_of(self, chosen: Callable[[Requester], bool], sentence: str) -> int:
        stopped = [job for job in self.jobs if chosen(job.requester)]
        for job in stopped:
            job.events.put_nowait(ErrorEvent(sentence, aborted=True))
        return len(stopped)


def hub_on(store: TrajectoryStore, scheduler: Scheduler, admit=None) -> TrajectoryHub:
    async def submit(spec: GenerationSpec, requester: Requester, lesson: bool) -> SimpleNamespace:
        return scheduler.submit(spec, requester)

    model = SimpleNamespace(model_id="tiny", revision="r1")
    encoder = ThreadPoolExecutor(1)
    return TrajectoryHub(
        model, scheduler, store, encoder, 2**20, Metrics(), admit or submit, shared_flight=True, lease_s=0.6
    )


def removed(name: str) -> Callable[[Requester], bool]:
    return lambda requester: requester.name == name


def test_a_removed_students_sentence_is_theirs_alone_here(redis_server):
    """Two readers here: the removed student's job stops, and the classmate's picture is computed on."""

    async def play() -> tuple[Trajectory, list[str], str]:
        store, scheduler = TrajectoryStore(redis_server.url, 60, SECRET), Scheduler()
        hub = hub_on(store, scheduler)
        asked = spec("a lantern that is removed")
        key = hub.key(asked)
        mine, source = await hub.open(asked, Requester("gone", name="Gone"), key)
        theirs, joined = await hub.open(asked, Requester("stays", name="Stays"), key)
        assert (mine is theirs, source, joined) == (True, pb.TRAJECTORY_SOURCE_COMPUTED, pb.TRAJECTORY_SOURCE_JOINED)
        assert hub.stop_jobs_of(removed("Gone"), SENTENCE) == 1
        while len(scheduler.jobs) < 2 and not mine.finished:  # until the work goes on as another job (or ends)
            await asyncio.sleep(0.01)
        await hub.close()
        await store.close()
        return mine, [job.requester.student for job in scheduler.jobs], key

    trajectory, students, key = asyncio.run(play())
    assert trajectory.error is None  # the classmate never hears the removed student's sentence
    assert students == ["gone", f"takeover:{key}"]  # computed on as the trajectory's own work, uncharged


def test_a_removed_students_sentence_is_theirs_alone_across_replicas(redis_server):
    """Alone here, the removed student hears it; a classmate following on another replica takes it over."""

    async def play() -> tuple[Trajectory, relay.Handover | None, Trajectory]:
        store, scheduler = TrajectoryStore(redis_server.url, 60, SECRET), Scheduler()
        hub = hub_on(store, scheduler)
        asked = spec("a lantern on another replica")
        key = hub.key(asked)
        mine, _ = await hub.open(asked, Requester("gone", name="Gone"), key)
        elsewhere, follower = Trajectory(key, asked.to_proto(), hub.model), Lease(lease_s=0.6)
        assert (await store.find_or_claim(key, follower)) == (None, False)  # the other replica watches
        following = asyncio.create_task(relay.follow(store, elsewhere, follower))
        hub.stop_jobs_of(removed("Gone"), SENTENCE)
        handover = await asyncio.wait_for(following, 30)
        await mine.ended.wait()
        await hub.close()
        await store.close()
        return mine, handover, elsewhere

    mine, handover, elsewhere = asyncio.run(play())
    assert mine.error == SENTENCE  # the removed student's own stream
    assert handover == relay.Handover(claimed=True, started=True)  # the classmate's replica computes it on
    assert elsewhere.error is None and not elsewhere.finished


def test_a_takeover_whose_last_reader_leaves_while_admitted_gives_its_claim_back(redis_server):
    admitting, never = asyncio.Event(), asyncio.Event()

    async def admit(spec: GenerationSpec, requester: Requester, lesson: bool) -> None:
        admitting.set()
        await never.wait()  # (the queue is slow to answer)

    async def play() -> tuple[int, str]:
        store = TrajectoryStore(redis_server.url, 60, SECRET)
        hub, owner = hub_on(store, Scheduler(), admit), Lease(lease_s=0.6)
        asked = spec("a lantern taken over")
        key = hub.key(asked)
        assert (await store.find_or_claim(key, owner)) == (None, True)  # another replica computes it
        trajectory, source = await hub.open(asked, Requester("reader"), key)
        assert source == pb.TRAJECTORY_SOURCE_JOINED
        await relay.give_up(store, trajectory, owner, relay.End.CANCELLED)  # its owner stops: taken over here
        await admitting.wait()
        hub.release(trajectory)  # the reader leaves while the takeover waits to be admitted
        await asyncio.gather(trajectory.relay, return_exceptions=True)
        claimed = await store.run(lambda client: client.exists(lease_key(key)))
        await hub.close()
        await store.close()
        return claimed, trajectory.error

    claimed, error = asyncio.run(play())
    assert claimed == 0  # readers elsewhere need not wait for the lease to run out
    assert error == relay.STOPPED_HERE


def test_a_followed_trajectory_is_kept_as_a_lesson_from_the_owners_stored_copy(redis_server):
    async def play() -> tuple[store_pb.TrajectoryRecord, store_pb.TrajectoryRecord]:
        store = TrajectoryStore(redis_server.url, 60, SECRET)
        hub, owner = hub_on(store, Scheduler()), Lease(lease_s=0.6)
        asked = spec("a lantern kept as a lesson")
        key = hub.key(asked)
        request = Trajectory(key, asked.to_proto(), hub.model).request
        header = pb.GenerateResponse(header=pb.TrajectoryHeader(request=request, total_steps=STEPS))
        frames = [pb.GenerateResponse(frame=pb.StepFrame(step_index=i, total_steps=STEPS)) for i in range(STEPS)]
        final = pb.GenerateResponse(final=pb.FinalImage(image=pb.Image(data=b"the owner's picture")))
        stored = store_pb.TrajectoryRecord(
            request=request, model_id="tiny", model_revision="r1", events=[header, *frames, final]
        )
        assert (await store.find_or_claim(key, owner)) == (None, True)
        followed, source = await hub.open(asked, Requester("reader"), key, lesson_entry="lesson-1")
        assert source == pb.TRAJECTORY_SOURCE_JOINED
        # The owner sends events that are not what it stores (as a replica whose picture bytes differ
        # would), stores its own, and ends: the follower keeps the stored copy as the lesson's.
        computing = Trajectory(key, asked.to_proto(), hub.model)
        publisher = asyncio.create_task(relay.publish(store, computing, owner, watched=True))
        other = pb.GenerateResponse(final=pb.FinalImage(image=pb.Image(data=b"relayed bytes")))
        for event in [header, *frames, other]:
            computing.append(event)
        assert await store.save(stored, Namespace.AD_HOC)
        computing.stored_in = Namespace.AD_HOC
        computing.finish()
        await publisher
        await asyncio.wait_for(followed.relay, 30)
        with redis_server.client() as client:
            lesson = unpack(client.get(redis_key(Namespace.LESSON, key)), SECRET)
        await hub.close()
        await store.close()
        return lesson, stored

    lesson, stored = asyncio.run(play())
    assert lesson.events[-1].final.image.data == b"the owner's picture"  # not the relayed bytes
    assert list(lesson.events) == list(stored.events) and lesson.lesson_entry_id == "lesson-1"
