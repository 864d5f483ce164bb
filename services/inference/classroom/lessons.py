"""The lesson catalog as this server runs it, and rendering it into the cache as lessons (precompute)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from services.common.api import pb
from services.inference.diffusion.jobs import Requester
from services.inference.diffusion.spec import GenerationSpec
from services.inference.refusals import QueueFull, TrajectoryFailed
from services.inference.trajectories.cache import TrajectoryStore
from services.inference.trajectories.hub import TrajectoryHub
from services.lessons.catalog import Entry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CatalogEntry:
    """A lesson example as this server runs it: checked, canonical, with its cache key."""

    entry: Entry
    spec: GenerationSpec
    request: pb.GenerateRequest  # canonical, defaults filled in
    key: str


@dataclass
class PrecomputeProgress:
    running: bool = False
    total: int = 0
    rendered: int = 0
    skipped: int = 0
    failed: int = 0
    last_error: str = ""


class LessonRender:
    """Renders each catalog entry not yet kept as a lesson, in the background, one run at a time."""

    def __init__(self, entries: list[CatalogEntry], store: TrajectoryStore, hub: TrajectoryHub, who: Requester) -> None:
        self.entries, self.store, self.hub, self.who = entries, store, hub, who
        self.progress = PrecomputeProgress()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> PrecomputeProgress:
        """Render, in the background, each catalog entry not yet kept as a lesson (once at a time)."""
        if self._task is None or self._task.done():
            self.progress = PrecomputeProgress(running=True)
            self._task = asyncio.create_task(self._render())
        return self.progress

    async def _render(self) -> None:
        progress = self.progress
        states = await self.store.states([e.key for e in self.entries])
        todo = [e for e, state in zip(self.entries, states, strict=True) if state != pb.CACHE_STATE_LESSON]
        progress.total, progress.skipped = len(todo), len(self.entries) - len(todo)
        try:
            for entry in todo:
                try:
                    trajectory, _ = await self.hub.open(entry.spec, self.who, entry.key, lesson_entry=entry.entry.id)
                    try:
                        await trajectory.wait()
                    finally:
                        self.hub.release(trajectory)
                    progress.rendered += 1
                except (TrajectoryFailed, QueueFull) as error:
                    progress.failed += 1
                    progress.last_error = f"{entry.entry.id}: {error}"
                    log.warning("precompute of %s failed: %s", entry.entry.id, error)
        finally:
            progress.running = False
            log.info("lesson precompute: %d rendered, %d skipped, %d failed",
                     progress.rendered, progress.skipped, progress.failed)  # fmt: skip

    async def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
