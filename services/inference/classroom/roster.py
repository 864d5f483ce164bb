"""Who is in class now: each signed-in name held by one live browser session.

A student signs in with the class code and a name; the front end then holds that
name for the session by calling `JoinClass` when the student signs in and again
every few seconds while the tab is open. It sends the browser's id, which the
front end keeps in a signed cookie: a classmate cannot send another browser's id.
The rules, for one class:

- Names are compared in folded form (`services.common.text.fold_name`): Alice
  with a Cyrillic A, in fullwidth letters or as "ALICE " is Alice's name.
- A name is held by one live session. Signing in again from the same browser (a
  reload, a second tab) takes the name over, and the older session is signed out
  on its next renewal; from another browser, while the holder is live, the name
  is refused, even at the same address (behind a school's network address
  translation the whole class shares one). A session that has not renewed for
  `live_s` has left.
- One browser address holds at most `max_per_address` names (0: no limit), so one
  machine cannot sit in many places.
- A name must pass the class's blocklist.
- The teacher can remove a name: its session is signed out, its generations are
  stopped, and nobody may use that name again until the teacher lets it back. The
  browser that held it is removed with it: it may not sign in under any name until
  the teacher lets the name back.

Each class's roster is one record in Redis (`SharedRoster`, through
`together/shared.py`), so every replica of the service holds the same names and
removals, and a restart of any or all of them forgets none: a name held through
one replica is refused through another, a name removed through one is refused
on all, and their running pictures stop everywhere. The times are the wall
clock's, which every replica shares. Without Redis the service's memory is the
roster (one process is the whole service); with Redis away for a moment, signing
in goes on against this process's last-known copy, so lessons keep opening, while
the teacher's removals wait until it is back (they must hold on every replica).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

from services.common.text import fold_name
from services.inference.moderation import Blocklist
from services.inference.refusals import (
    BlockedName,
    BrowserRemoved,
    NameRemoved,
    NameTaken,
    SignedInElsewhere,
    TooManyNames,
)
from services.inference.together.shared import Change, ClassRecords, Snapshot, class_digest

T = TypeVar("T")

LIVE_S = 60.0  # a session that has not renewed for this long has closed its tab
REPLACED_KEPT = 4096  # signed-out sessions remembered (a tab left open for hours after a reload)
REPLACED_KEPT_PER_CLASS = 256  # of them, in a class's shared record
ROSTER = "roster"  # the part of a class's shared state (see together/shared.py)


@dataclass
class Seat:
    """One signed-in name and the session holding it."""

    classroom: str
    name: str  # as the student typed it
    session: str
    address: str
    browser: str  # the front end's signed browser id ("" when none was sent: never taken over)
    joined: float  # time.time(), for the teacher's page
    seen: float  # the clock's time of the last renewal


@dataclass(frozen=True)
class RosterEntry:
    """A name as the teacher's page lists it."""

    classroom: str
    name: str
    seconds_since_seen: float
    joined_unix: float
    removed: bool


@dataclass
class Removed:
    """A name the teacher removed, as the teacher saw it, and the browser that held it (if one did)."""

    name: str
    browser: str


def _key(classroom: str, name: str) -> tuple[str, str]:
    return classroom, fold_name(name)


class Roster:
    """The names signed in to each class, one live session each."""

    def __init__(
        self,
        max_per_address: int = 0,
        live_s: float = LIVE_S,
        clock: Callable[[], float] = time.monotonic,
        blocklist: Blocklist | None = None,
    ) -> None:
        self.max_per_address, self.live_s, self.clock = max_per_address, live_s, clock
        self.blocklist = blocklist or Blocklist([])
        self._seats: dict[tuple[str, str], Seat] = {}
        self._removed: dict[tuple[str, str], Removed] = {}
        # (classroom, session) pairs signed out by a newer sign-in, the oldest forgotten first.
        self._replaced: dict[tuple[str, str], None] = {}

    def _live(self, seat: Seat) -> bool:
        return self.clock() - seat.seen < self.live_s

    def _forget_the_gone(self) -> None:
        for key in [key for key, seat in self._seats.items() if not self._live(seat)]:
            del self._seats[key]

    def join(self, classroom: str, name: str, session: str, address: str, browser: str = "") -> None:
        """Sign in, or renew: this session holds this name now. Raises a refusal if it may not."""
        key = _key(classroom, name)
        if key in self._removed:
            raise NameRemoved(name)
        if browser and any(r.browser == browser for (c, _), r in self._removed.items() if c == classroom):
            raise BrowserRemoved()
        if (classroom, session) in self._replaced:
            raise SignedInElsewhere(name)
        if self.blocklist.blocks(name):
            raise BlockedName()
        self._forget_the_gone()
        seat = self._seats.get(key)
        if seat is not None and seat.session != session:
            if not browser or seat.browser != browser:
                raise NameTaken(name)
            self._replaced[classroom, seat.session] = None  # a reload or another tab of the same browser
            if len(self._replaced) > REPLACED_KEPT:
                del self._replaced[next(iter(self._replaced))]
            seat = None
        if seat is None and self.max_per_address and address:
            held = sum(s.address == address and s.classroom == classroom for s in self._seats.values())
            if held >= self.max_per_address:
                raise TooManyNames(held)
        if seat is None:
            seat = self._seats[key] = Seat(classroom, name, session, address, browser, time.time(), self.clock())
        seat.seen = self.clock()

    def check(self, classroom: str, name: str) -> None:
        """Raise NameRemoved if the teacher removed this name (a generation's last check)."""
        if name and _key(classroom, name) in self._removed:
            raise NameRemoved(name)

    def remove(self, classroom: str, name: str) -> bool:
        """The teacher removes a name, and the browser that holds it; True if it was signed in."""
        key = _key(classroom, name)
        seat = self._seats.pop(key, None)  # a tab closed a moment ago still names its browser
        if seat is not None and seat.browser:
            # Its other names in the class go too (their next renewal is refused): the browser is out, not the name.
            for other in [k for k, s in self._seats.items() if k[0] == classroom and s.browser == seat.browser]:
                del self._seats[other]
        self._removed[key] = Removed(seat.name if seat else name, seat.browser if seat else "")
        return seat is not None

    def let_back(self, classroom: str, name: str) -> bool:
        """The teacher lets a removed name, and its browser, sign in again; True if it was removed."""
        return self._removed.pop(_key(classroom, name), None) is not None

    def entries(self) -> list[RosterEntry]:
        """Every live name, by class and name, then the removed ones."""
        self._forget_the_gone()
        now = self.clock()
        live = [
            RosterEntry(s.classroom, s.name, now - s.seen, s.joined, False)
            for s in sorted(self._seats.values(), key=lambda s: (s.classroom, fold_name(s.name)))
        ]
        removed = [RosterEntry(classroom, r.name, 0.0, 0.0, True) for (classroom, _), r in self._removed.items()]
        return live + removed

    def removed_in(self, classroom: str) -> set[str]:
        """One class's removed names, folded."""
        return {folded for (c, folded) in self._removed if c == classroom}

    # -- one class's roster as a record (SharedRoster) ---------------------------------

    def dump(self, classroom: str) -> bytes:
        """One class's seats, removed names and signed-out sessions, as JSON."""
        seats = [[s.name, s.session, s.address, s.browser, s.joined, s.seen]
                 for (c, _), s in self._seats.items() if c == classroom]  # fmt: skip
        removed = [[r.name, r.browser] for (c, _), r in self._removed.items() if c == classroom]
        replaced = [session for c, session in self._replaced if c == classroom][-REPLACED_KEPT_PER_CLASS:]
        return json.dumps({"seats": seats, "removed": removed, "replaced": replaced}).encode()

    def load(self, classroom: str, payload: bytes | None) -> Roster:
        """Take in a class's record as `dump` wrote it (None: an empty class); returns self."""
        found = json.loads(payload) if payload else {}
        for name, session, address, browser, joined, seen in found.get("seats", []):
            self._seats[_key(classroom, name)] = Seat(classroom, name, session, address, browser, joined, seen)
        for name, browser in found.get("removed", []):
            self._removed[_key(classroom, name)] = Removed(name, browser)
        for session in found.get("replaced", []):
            self._replaced[classroom, session] = None
        return self


class SharedRoster:
    """The Roster's rules over each class's record in Redis, shared by every replica (see the docstring above)."""

    def __init__(self, records: ClassRecords, max_per_address: int = 0, blocklist: Blocklist | None = None) -> None:
        self.records, self.max_per_address, self.blocklist = records, max_per_address, blocklist
        self.live_s = LIVE_S
        self._classes: dict[str, str] = {}  # by digest: the classes signed in through this replica
        self._when_removed: Callable[[str, set[str]], object] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        records.listen(self._changed)

    def _know(self, classroom: str) -> None:
        """A class's removals are heard here from its first sign-in or picture on this replica."""
        if len(self._classes) < 4096:
            self._classes.setdefault(class_digest(classroom), classroom)

    def when_removed(self, stop: Callable[[str, set[str]], object]) -> None:
        """Call `stop(class, folded names)` when the teacher removes names of a class, through any replica."""
        self._when_removed = stop

    def _changed(self, digest: str, part: str) -> None:
        if part not in (ROSTER, "") or self._when_removed is None:
            return
        for classroom in [c for d, c in self._classes.items() if digest in ("", d)]:
            task = asyncio.get_running_loop().create_task(self._tell_removed(classroom))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _tell_removed(self, classroom: str) -> None:
        if self._when_removed is not None:
            self._when_removed(classroom, await self.removed(classroom))

    def _roster(self, classroom: str, snapshot: Snapshot) -> Roster:
        # The wall clock: a seat renewed through one replica is seen by the others.
        roster = Roster(self.max_per_address, self.live_s, time.time, self.blocklist)
        return roster.load(classroom, snapshot.value)

    async def join(self, classroom: str, name: str, session: str, address: str, browser: str = "") -> None:
        self._know(classroom)
        self.records.start()
        await self._edit(classroom, lambda roster: roster.join(classroom, name, session, address, browser), "local")

    async def check(self, classroom: str, name: str) -> None:
        """Raise NameRemoved if the teacher removed this name, through any replica."""
        if name:
            self._know(classroom)
            self.records.start()
            self._roster(classroom, await self.records.read(classroom, ROSTER)).check(classroom, name)

    async def removed(self, classroom: str) -> set[str]:
        """The class's removed names, folded."""
        return self._roster(classroom, await self.records.read(classroom, ROSTER)).removed_in(classroom)

    async def remove(self, classroom: str, name: str) -> bool:
        # A notice: every replica stops the name's pictures (Classroom listens).
        return await self._edit(classroom, lambda roster: roster.remove(classroom, name), "refuse", notify=True)

    async def let_back(self, classroom: str, name: str) -> bool:
        return await self._edit(classroom, lambda roster: roster.let_back(classroom, name), "refuse")

    async def _edit(
        self, classroom: str, act: Callable[[Roster], T], away: Literal["refuse", "local"], notify: bool = False
    ) -> T:
        """One change of the class's roster record: load it, `act` by the Roster's rules, store it; act's answer."""

        def decide(snapshot: Snapshot) -> Change[T]:
            roster = self._roster(classroom, snapshot)
            answer = act(roster)
            return Change(answer, value=roster.dump(classroom))

        answer, _ = await self.records.change(classroom, ROSTER, decide, away=away, notify=notify)
        return answer

    async def entries(self) -> list[RosterEntry]:
        """Every class's live names, then the removed ones (as `Roster.entries`), by class."""
        classrooms = sorted(await self.records.classes())
        values = await self.records.read_many(classrooms, ROSTER)
        entries: list[RosterEntry] = []
        for classroom, value in zip(classrooms, values, strict=True):
            entries += self._roster(classroom, Snapshot(0, value)).entries()
        live = [e for e in entries if not e.removed]
        return live + [e for e in entries if e.removed]
