"""A class's shared records (together/shared.py) on a real Redis: races, forgeries, Redis away, no Redis."""

from __future__ import annotations

import asyncio

import pytest

from services.inference.classroom.roster import ROSTER, Roster, SharedRoster
from services.inference.refusals import ClassStateUnavailable
from services.inference.together.shared import Change, ClassRecords, Snapshot
from services.inference.trajectories.cache import TrajectoryStore


def counted(snapshot: Snapshot) -> Change[int]:
    """Add one to the record, a number kept as text."""
    value = int(snapshot.value or b"0") + 1
    return Change(value, value=str(value).encode())


def records(url: str | None, secret: bytes = b"the class's secret") -> ClassRecords:
    return ClassRecords(TrajectoryStore(url, ad_hoc_ttl_s=60, secret=secret, retry_after_s=0.1))


def test_two_replicas_changing_one_class_at_once_lose_no_change(fresh_redis):
    redis = fresh_redis("records")
    a, b = records(redis.url), records(redis.url)

    async def run() -> tuple[Snapshot, list[int]]:
        versions = []
        for _ in range(2):
            versions.append((await a.read("7B", "live")).version)
            await asyncio.gather(*(r.change("7B", "live", counted, away="refuse") for r in (a, b) * 10))
        versions.append((await b.read("7B", "live")).version)
        return await b.read("7B", "live"), versions

    snapshot, versions = asyncio.run(run())
    assert snapshot.value == b"40"  # 40 changes through two "replicas" at once: every one counted
    assert versions[1] > versions[0] and versions[2] - versions[1] == 20  # one version a change


def test_a_student_mark_is_set_once_and_a_new_question_clears_them(fresh_redis):
    redis = fresh_redis("marks")
    a, b = records(redis.url), records(redis.url)

    async def run() -> list[bool]:
        answer = [
            (await r.change("7B", "live", lambda s, r=r: Change(None, mark=("s-ada", b"q1:0")), away="refuse"))[1]
            for r in (a, b)
        ]
        assert (await a.read("7B", "live", marks=True)).marks == {"s-ada": b"q1:0"}
        await b.change("7B", "live", lambda s: Change(None, value=b"q2", clear_marks=True), away="refuse")
        assert (await a.read("7B", "live", marks=True)).marks == {}
        return answer

    assert asyncio.run(run()) == [True, False]  # the second answer, through the other replica, is refused


def test_a_value_not_signed_by_the_service_reads_as_none(fresh_redis):
    redis = fresh_redis("forged")
    ours, theirs = records(redis.url), records(redis.url, secret=b"someone with the redis password")

    async def run() -> tuple[Snapshot, Snapshot]:
        await theirs.change("7B", "roster", lambda s: Change(None, value=b"forged"), away="refuse")
        await theirs.change("7B", "live", lambda s: Change(None, mark=("s-eve", b"q1:0")), away="refuse")
        return await ours.read("7B", "roster"), await ours.read("7B", "live", marks=True)

    roster, live = asyncio.run(run())
    assert roster.value is None and live.marks == {}


def test_with_redis_away_teacher_acts_are_refused_and_sign_in_goes_on_locally(fresh_redis):
    redis = fresh_redis("away")
    shared = records(redis.url)

    async def run() -> None:
        await shared.change("7B", "roster", counted, away="local")
        redis.kill()
        with pytest.raises(ClassStateUnavailable):
            await shared.change("7B", "live", counted, away="refuse")
        assert (await shared.change("7B", "roster", counted, away="local"))[0] == 2  # on the last-known copy
        assert (await shared.read("7B", "roster")).value == b"2"

    asyncio.run(run())


def test_without_redis_the_process_keeps_the_records():
    alone = records(None)
    heard: list[tuple[str, str]] = []
    alone.listen(lambda digest, part: heard.append((digest, part)))

    async def run() -> Snapshot:
        await alone.change("7B", "live", counted, away="refuse")
        await alone.change("7B", "live", counted, away="refuse")
        return await alone.read("7B", "live")

    snapshot = asyncio.run(run())
    assert snapshot.value == b"2" and snapshot.version > 0 and [part for _, part in heard] == ["live", "live"]


def test_a_class_roster_as_a_record_keeps_seats_removals_and_signed_out_sessions():
    clock = [1000.0]
    roster = Roster(clock=lambda: clock[0])
    roster.join("7B", "Ada", "tab-1", "10.0.0.5", browser="b-ada")
    roster.join("7B", "Ada", "tab-2", "10.0.0.5", browser="b-ada")  # a reload: tab-1 is signed out
    roster.join("7B", "Ben", "tab-3", "10.0.0.5", browser="b-ben")
    roster.remove("7B", "Ben")
    roster.join("8C", "Cy", "tab-4", "10.0.0.6")  # another class: not in 7B's record
    again = Roster(clock=lambda: clock[0]).load("7B", roster.dump("7B"))
    assert [(e.name, e.removed) for e in again.entries()] == [("Ada", False), ("Ben", True)]
    with pytest.raises(Exception, match="another tab"):
        again.join("7B", "Ada", "tab-1", "10.0.0.5", browser="b-ada")
    with pytest.raises(Exception, match="already signed in"):
        again.join("7B", "ADA", "tab-5", "10.0.0.7", browser="b-thief")


async def until(condition, bound_s: float = 20.0) -> None:
    """Wait for `condition()` to hold (a generous bound: it fails the test, it times nothing)."""
    for _ in range(int(bound_s / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the condition never held")


def test_a_failing_listener_or_a_dead_listening_task_stops_no_notice(fresh_redis):
    redis = fresh_redis("listeners")
    a, b = records(redis.url), records(redis.url)
    a.recheck_s = 600  # no periodic recheck here: only notices
    heard: list[tuple[str, str]] = []

    def broken(digest: str, part: str) -> None:
        raise RuntimeError("a listener's bug")

    a.listen(broken)
    a.listen(lambda digest, part: heard.append((digest, part)))

    async def run() -> None:
        a.start()
        await until(lambda: ("", "") in heard)  # subscribed: anything may have changed
        await b.change("7B", "live", counted, away="refuse")
        await until(lambda: heard[-1][1] == "live")  # heard past the broken listener
        await b.change("7B", "roster", counted, away="refuse")
        await until(lambda: heard[-1][1] == "roster")  # and the listening goes on
        assert a._listening is not None
        a._listening.cancel()  # the listening task ends (as one dying of an unexpected error would)
        await until(lambda: a._listening.done())
        heard.clear()
        await b.change("7B", "live", counted, away="refuse")  # published while no one listens on A
        a.start()  # the next sign-in, check or watch starts it again
        await until(lambda: ("", "") in heard)  # and says notices may have been missed
        a.stop()

    asyncio.run(run())


def test_a_dropped_subscription_resubscribed_by_redis_py_is_a_notice_that_anything_changed(fresh_redis):
    import redis as redis_sync

    redis = fresh_redis("resubscribe")
    a = records(redis.url)
    a.recheck_s = 600
    heard: list[tuple[str, str]] = []
    a.listen(lambda digest, part: heard.append((digest, part)))

    async def run() -> None:
        a.start()
        await until(lambda: ("", "") in heard)
        heard.clear()
        killed = redis_sync.Redis.from_url(redis.url).client_kill_filter(_type="pubsub")
        assert killed == 1  # Redis drops the subscription (as a restart or a network fault would)
        await until(lambda: ("", "") in heard)  # the reconnection is heard, whoever made it
        a.stop()

    asyncio.run(run())


def test_a_removal_whose_notice_was_lost_still_stops_the_name_on_every_replica(fresh_redis):
    redis = fresh_redis("recheck")
    a, b = records(redis.url), records(redis.url)
    a.recheck_s = 0.2
    roster_a = SharedRoster(a)
    stopped: list[tuple[str, set[str]]] = []
    roster_a.when_removed(lambda classroom, folded: stopped.append((classroom, folded)))

    async def run() -> None:
        await roster_a.join("7B", "Ben", "tab-1", "10.0.0.5")  # Ben's pictures run on A
        roster = Roster().load("7B", (await b.read("7B", ROSTER)).value)
        roster.remove("7B", "Ben")
        # The removal written, its notice lost (published in a gap between two connections):
        await b.change("7B", ROSTER, lambda s: Change(None, value=roster.dump("7B")), away="refuse", notify=False)
        await until(lambda: ("7B", {"ben"}) in stopped)  # A's recheck finds it and stops Ben's pictures
        a.stop()

    asyncio.run(run())
