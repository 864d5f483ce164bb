"""A failed picture's sentences reach every reader in their language, whichever way the failure came.

A trajectory that fails keeps the sentences its readers are told, each with the template
and arguments it was written from, all of them for a refusal made of several (the queue
is full, try again in N minutes): when its start is refused on a takeover or when its
work goes on after its requester's stop, and on another replica whose readers followed
it through Redis. `TrajectoryFailed` then sends every template in its ErrorInfo, as the
refusal itself does. Redis is real (the `redis_server` fixture); the hub has no model.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import SimpleNamespace

import pytest
from google.rpc import error_details_pb2

from frontend.language import translate
from services.common import i18n
from services.common.errors import student_error
from services.common.i18n import N_, Sentence
from services.inference.diffusion.jobs import MODEL_FAILURE, QUEUE_CLEARED, Requester
from services.inference.diffusion.spec import GenerationSpec
from services.inference.refusals import QueueFull, Refusal, TrajectoryFailed, sentences_of
from services.inference.trajectories import relay
from services.inference.trajectories.cache import TrajectoryStore
from services.inference.trajectories.lease import Lease, lease_key, live_key
from services.inference.trajectories.log import Trajectory
from tests.unit.test_flight_relay import trajectory
from tests.unit.test_hub_flight_stops import SENTENCE, Scheduler, hub_on, removed, spec
from tests.unit.test_refusal_languages import RefusedCall

SECRET = b"failed sentences test"
FULL = QueueFull(waiting=12, retry_after_s=90)  # two sentences: the queue is full; try again in about 2 minutes
FULL_METADATA = {
    "template": "The class queue is full right now ({waiting} pictures are waiting).",
    "template.1": "Please try again in about {minutes} minute(s).",
    "waiting": "12",
    "minutes": "2",
}

# The student's own text in an argument, however odd: quotes, braces, a new line, NUL, a tab, accents, an emoji.
ODD = Sentence(N_("Your teacher removed the name {name} from the class. Ask your teacher about it."),
               name='Zoë "{0}" \'}\n\x00\t🦉 \\u00e9')  # fmt: skip


def metadata(refusal: Refusal) -> dict[str, str]:
    """The templates and arguments its ErrorInfo carries ({} when it has none)."""
    found = [detail for detail in refusal.details() if isinstance(detail, error_details_pb2.ErrorInfo)]
    return dict(found[0].metadata) if found else {}


async def failure(trajectory: Trajectory) -> TrajectoryFailed:
    """What a reader of the trajectory is told at its end."""
    with pytest.raises(TrajectoryFailed) as failed:
        await asyncio.wait_for(trajectory.wait(), 30)
    return failed.value


def test_what_a_student_reads_of_a_failure_sentence_by_sentence():
    assert sentences_of(FULL) == FULL.sentences and all(isinstance(s, Sentence) for s in sentences_of(FULL))
    checked = Sentence(N_("Type the new word first."))
    assert sentences_of(ValueError(checked)) == [checked] and sentences_of(ValueError(checked))[0] is checked
    assert sentences_of(RuntimeError("the disk is full")) == ["the disk is full"]  # unexpected: English as it is
    assert sentences_of(RuntimeError()) == ["RuntimeError"]


def test_a_trajectory_failed_with_a_refusal_sends_every_template():
    failed = Trajectory("failed", spec("a lantern").to_proto(), SimpleNamespace(model_id="tiny", revision="r1"))
    failed.finish(error=sentences_of(FULL))
    assert failed.error == FULL.sentence  # the English, as logs and older clients read it
    refusal = asyncio.run(failure(failed))
    assert str(refusal) == FULL.sentence and metadata(refusal) == FULL_METADATA
    unexpected = TrajectoryFailed(sentences_of(RuntimeError("the disk is full")))
    assert str(unexpected) == "the disk is full" and metadata(unexpected) == {}  # no template to send


def test_a_takeover_refused_by_a_full_queue_tells_its_readers_both_sentences(redis_server):
    """Another replica stops its work; taking it over here, the queue is full: its readers hear why, translatable."""

    async def admit(spec: GenerationSpec, requester: Requester, lesson: bool) -> None:
        raise FULL

    async def play() -> tuple[TrajectoryFailed, int]:
        store = TrajectoryStore(redis_server.url, 60, SECRET)
        hub, owner = hub_on(store, Scheduler(), admit), Lease(lease_s=0.6)
        asked = spec("a lantern taken over by a full queue")
        key = hub.key(asked)
        assert (await store.find_or_claim(key, owner)) == (None, True)  # another replica computes it
        followed, _ = await hub.open(asked, Requester("reader"), key)
        await relay.give_up(store, followed, owner, relay.End.CANCELLED)  # its owner stops: taken over here
        failed = await failure(followed)
        claimed = await store.run(lambda client: client.exists(lease_key(key)))
        hub.release(followed)
        await hub.close()
        await store.close()
        return failed, claimed

    failed, claimed = asyncio.run(play())
    assert metadata(failed) == FULL_METADATA and str(failed) == FULL.sentence
    assert claimed == 0  # (and the claim went back at once)


def test_work_refused_after_its_requesters_stop_tells_its_other_readers_both_sentences(redis_server):
    """A removed student's job stops; going on for a classmate, the queue is full: the classmate hears that."""
    admitted: list[bool] = []

    def admit_once(scheduler: Scheduler) -> Callable:
        async def admit(spec: GenerationSpec, requester: Requester, lesson: bool) -> SimpleNamespace:
            if admitted:
                raise FULL
            admitted.append(True)
            return scheduler.submit(spec, requester)

        return admit

    async def play() -> TrajectoryFailed:
        store, scheduler = TrajectoryStore(redis_server.url, 60, SECRET), Scheduler()
        hub = hub_on(store, scheduler, admit_once(scheduler))
        asked = spec("a lantern going on into a full queue")
        key = hub.key(asked)
        await hub.open(asked, Requester("gone", name="Gone"), key)
        theirs, _ = await hub.open(asked, Requester("stays", name="Stays"), key)
        assert hub.stop_jobs_of(removed("Gone"), SENTENCE) == 1
        failed = await failure(theirs)
        await hub.close()
        await store.close()
        return failed

    failed = asyncio.run(play())
    assert metadata(failed) == FULL_METADATA  # not the removed student's sentence: the classmate's own


@pytest.mark.parametrize(
    ("sentences", "aborted"),
    [
        (FULL.sentences, False),
        ([MODEL_FAILURE], False),
        ([ODD], True),
    ],
)
def test_a_failure_relayed_to_another_replica_keeps_its_templates(redis_server, sentences, aborted):
    owner, follower = Lease(lease_s=0.6), Lease(lease_s=0.6)
    key = f"relayed-failure-{sentences[0].template[:20]}"

    async def play(store: TrajectoryStore) -> tuple[relay.Handover | None, Trajectory]:
        computing, following = trajectory(key), trajectory(key)
        assert (await store.find_or_claim(key, owner)) == (None, True)
        assert (await store.find_or_claim(key, follower)) == (None, False)  # it watches
        publisher = asyncio.create_task(relay.publish(store, computing, owner, watched=True))
        reader = asyncio.create_task(relay.follow(store, following, follower))
        computing.finish(error=sentences, aborted=aborted)
        await publisher
        handover = await asyncio.wait_for(reader, 30)
        await store.close()
        return handover, following

    handover, following = asyncio.run(play(TrajectoryStore(redis_server.url, 60, SECRET)))
    assert handover is None and following.aborted is aborted
    assert following.sentences == sentences and following.error == " ".join(sentences)
    assert [(s.template, s.args) for s in following.sentences] == [(s.template, s.args) for s in sentences]
    failed = asyncio.run(failure(following))
    assert metadata(failed) == metadata(TrajectoryFailed(sentences)) != {}


def test_a_relayed_failure_reads_in_the_followers_students_language(redis_server):
    """End to end on the client's side: the teacher cleared the queue on one replica; a reader on another, Spanish."""
    owner, follower = Lease(lease_s=0.6), Lease(lease_s=0.6)
    key = "relayed-failure-in-spanish"

    async def play(store: TrajectoryStore) -> TrajectoryFailed:
        computing, following = trajectory(key), trajectory(key)
        assert (await store.find_or_claim(key, owner)) == (None, True)
        assert (await store.find_or_claim(key, follower)) == (None, False)
        publisher = asyncio.create_task(relay.publish(store, computing, owner, watched=True))
        reader = asyncio.create_task(relay.follow(store, following, follower))
        computing.finish(error=QUEUE_CLEARED, aborted=True)
        await publisher
        await asyncio.wait_for(reader, 30)
        await store.close()
        return await failure(following)

    failed = asyncio.run(play(TrajectoryStore(redis_server.url, 60, SECRET)))
    i18n.use_translator(lambda message: translate(message, "es"))
    try:
        spanish = str(student_error(RefusedCall(failed)))
    finally:
        i18n.use_translator(lambda message: message)
    assert spanish == translate(QUEUE_CLEARED.template, "es") != QUEUE_CLEARED


def test_a_plain_failure_with_a_stray_surrogate_still_reaches_the_follower(redis_server):
    """An unexpected error's English, even text that UTF-8 cannot hold, ends the follower's stream as a failure."""
    owner, follower = Lease(lease_s=0.6), Lease(lease_s=0.6)
    key = "relayed-odd-text"

    async def play(store: TrajectoryStore) -> tuple[relay.Handover | None, Trajectory]:
        computing, following = trajectory(key), trajectory(key)
        assert (await store.find_or_claim(key, owner)) == (None, True)
        assert (await store.find_or_claim(key, follower)) == (None, False)
        publisher = asyncio.create_task(relay.publish(store, computing, owner, watched=True))
        reader = asyncio.create_task(relay.follow(store, following, follower))
        computing.finish(error=sentences_of(RuntimeError("a broken \ud800 name")))
        await publisher
        handover = await asyncio.wait_for(reader, 30)
        await store.close()
        return handover, following

    handover, following = asyncio.run(play(TrajectoryStore(redis_server.url, 60, SECRET)))
    assert handover is None and following.finished and following.sentences == ["a broken \ud800 name"]
    assert following.error == "a broken \ud800 name"
    with redis_server.client() as client:
        (end,) = [fields for _, fields in client.xrange(live_key(key)) if b"end" in fields]
    assert end[b"error"] == b"a broken ? name"  # the English field, as an older replica reads it
    assert metadata(TrajectoryFailed(following.sentences)) == {}  # English as it is, no template


@pytest.mark.parametrize(
    "sentences_field",
    [None, b"not json", b'[{"template": "The class queue is full right now ({waiting} pictures are waiting)."}]'],
)
def test_an_end_written_by_an_older_replica_or_unreadable_is_read_as_its_english(redis_server, sentences_field):
    """An end with only `error` (written before sentences were sent), or sentences that cannot be rebuilt."""
    follower = Lease(lease_s=0.6)
    key = f"older-end-{sentences_field!r}"
    store = TrajectoryStore(redis_server.url, 60, SECRET)
    fields = {b"end": b"failed", b"error": "Something went wrong — try again.".encode(), b"aborted": b"0"}
    if sentences_field is not None:
        fields[b"sentences"] = sentences_field
    with redis_server.client() as client:
        client.set(lease_key(key), "an older replica", px=60_000)
        client.xadd(live_key(key), relay._signed(store, key, fields))

    async def play() -> tuple[relay.Handover | None, Trajectory]:
        following = trajectory(key)
        assert (await store.find_or_claim(key, follower)) == (None, False)
        handover = await asyncio.wait_for(relay.follow(store, following, follower), 30)
        await store.close()
        return handover, following

    handover, following = asyncio.run(play())
    assert handover is None and following.finished
    assert following.sentences == ["Something went wrong — try again."] and following.error == following.sentences[0]
    assert not isinstance(following.sentences[0], Sentence)
