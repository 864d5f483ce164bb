"""The crowd hold: while a class's calls arrive in a burst, replays send their first message and then wait.

The server accepts calls one at a time, between the messages of the streams already
under way. When a class opens the same lesson at once, a replay that sent its whole
trajectory straight away would keep every later student waiting for their first frame.
So while a crowd is arriving (the last `size` calls all within `window_s`), a replay
holds each message after its first, for at most `wait_s` each time. A steady flow of
students, slower than that, is never held.

Every held stream waits on one shared future, resolved by one watcher when the crowd
has passed: 200 held readers cost one timer, not 200 pollers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque


class CrowdHold:
    """Counts arrivals and holds replays while they come in a burst."""

    def __init__(self, size: int = 16, window_s: float = 0.1, wait_s: float = 0.25) -> None:
        self.size, self.window_s, self.wait_s = size, window_s, wait_s
        self._arrivals: deque[float] = deque(maxlen=size)  # when the latest calls arrived
        self._calm: asyncio.Future[None] | None = None  # resolved when the current crowd has passed
        self._watcher: asyncio.Task[None] | None = None

    def arrived(self) -> None:
        """A call arrived."""
        self._arrivals.append(time.monotonic())

    def left_s(self) -> float:
        """Seconds until the calls seen so far stop counting as a crowd (0: no crowd now)."""
        arrivals = self._arrivals
        if len(arrivals) < self.size:
            return 0.0
        return max(0.0, arrivals[0] + self.window_s - time.monotonic())

    async def hold(self) -> None:
        """Return once no crowd is arriving, or after `wait_s`, whichever comes first."""
        if self.left_s() == 0:
            return
        if self._calm is None or self._calm.done():
            self._calm = asyncio.get_running_loop().create_future()
            self._watcher = asyncio.create_task(self._watch(self._calm))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._calm), self.wait_s)

    async def _watch(self, calm: asyncio.Future[None]) -> None:
        while (left := self.left_s()) > 0:
            await asyncio.sleep(left)
        if not calm.done():
            calm.set_result(None)

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
