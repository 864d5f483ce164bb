"""The TeacherService: the live classroom for the teacher's page, and the teacher's controls.

Every call needs the teacher code (`x-teacher-code`). Students' names are shown,
their prompts only when the teacher asks. Precompute runs inside the service,
through the same trajectories and queue as the students, one lesson at a time.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import TYPE_CHECKING

import grpc
import torch

from services.common.api import TEACHER_METADATA, pb, pb_grpc
from services.inference.batching import QueueFull, Requester
from services.inference.trajectories import TrajectoryFailed

if TYPE_CHECKING:
    from services.inference.server import DiffusionService

log = logging.getLogger(__name__)

NO_TEACHER_CODE = "This server has no teacher code set (CLASSROOM_TEACHER_CODE), so the teacher's page is off."
WRONG_TEACHER_CODE = "The teacher code is missing or wrong."
# Precompute generates as a student of its own (one lesson at a time, like any student).
PRECOMPUTE = Requester("teacher:precompute", name="lesson precompute")


class TeacherService(pb_grpc.TeacherServiceServicer):
    """Reads and steers the DiffusionService it is given."""

    def __init__(self, service: DiffusionService, teacher_code: str | None) -> None:
        self.service = service
        self.teacher_code = teacher_code
        self.progress = pb.PrecomputeProgress()
        self._precompute: asyncio.Task[None] | None = None

    async def _check(self, context: grpc.aio.ServicerContext) -> None:
        if not self.teacher_code:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, NO_TEACHER_CODE)
        sent = dict(context.invocation_metadata() or ()).get(TEACHER_METADATA, "")
        if not hmac.compare_digest(str(sent).encode(), str(self.teacher_code).encode()):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, WRONG_TEACHER_CODE)
        await self.service.ready(context)

    async def GetClassroom(
        self, request: pb.GetClassroomRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetClassroomResponse:
        await self._check(context)
        service = self.service
        assert service.runner is not None and service.model is not None
        runner = service.runner
        stats = await service.GetServerStats(pb.GetServerStatsRequest(), context)
        streams = stats.cache_hits + stats.single_flight_joins + stats.cache_misses
        jobs = [
            pb.ClassroomJob(
                student_name=job.student_name,
                class_name=job.classroom,
                running=job.running,
                position=job.position,
                steps_done=job.steps_done,
                total_steps=job.total_steps,
                seconds=job.seconds,
                prompt=job.prompt if request.include_prompts else "",
            )
            for job in runner.jobs()
        ]
        blocked = [
            pb.BlockedAttempt(
                student_name=b.student_name,
                unix_time=b.unix_time,
                prompt=b.prompt if request.include_prompts else "",
            )
            for b in service.blocked
        ]
        used = total = 0
        device = service.model.device
        if device.type == "cuda":
            free, total = torch.cuda.mem_get_info(device)
            used = total - free
        return pb.GetClassroomResponse(
            jobs=jobs,
            paused=runner.paused,
            stats=stats,
            cache_hit_rate=(stats.cache_hits + stats.single_flight_joins) / streams if streams else 0.0,
            device=str(device),
            max_batch_size=runner.max_batch_size,
            average_batch_size=runner.average_batch,
            gpu_memory_used_bytes=used,
            gpu_memory_total_bytes=total,
            blocked=blocked,
            precompute=self.progress,
        )

    async def SetPaused(self, request: pb.SetPausedRequest, context: grpc.aio.ServicerContext) -> pb.SetPausedResponse:
        await self._check(context)
        assert self.service.runner is not None
        self.service.runner.pause(request.paused)
        log.info("the teacher %s generation", "paused" if request.paused else "resumed")
        return pb.SetPausedResponse(paused=self.service.runner.paused)

    async def ClearQueue(
        self, request: pb.ClearQueueRequest, context: grpc.aio.ServicerContext
    ) -> pb.ClearQueueResponse:
        await self._check(context)
        assert self.service.runner is not None
        cleared = self.service.runner.clear_queue()
        log.info("the teacher cleared the queue: %d generation(s)", cleared)
        return pb.ClearQueueResponse(cleared=cleared)

    async def PrecomputeLessons(
        self, request: pb.PrecomputeLessonsRequest, context: grpc.aio.ServicerContext
    ) -> pb.PrecomputeLessonsResponse:
        await self._check(context)
        if self._precompute is None or self._precompute.done():
            self.progress = pb.PrecomputeProgress(running=True)
            self._precompute = asyncio.create_task(self._render_catalog())
        return pb.PrecomputeLessonsResponse(progress=self.progress)

    async def _render_catalog(self) -> None:
        """Render each catalog entry not yet kept as a lesson, one at a time; count what happened."""
        service, progress = self.service, self.progress
        assert service.hub is not None
        entries = service.catalog_entries
        states = await service.store.states([e.key for e in entries])
        todo = [e for e, state in zip(entries, states, strict=True) if state != pb.CACHE_STATE_LESSON]
        progress.total, progress.skipped = len(todo), len(entries) - len(todo)
        try:
            for entry in todo:
                try:
                    trajectory, _ = await service.hub.open(entry.spec, PRECOMPUTE, lesson_entry=entry.entry.id)
                    try:
                        await trajectory.wait()
                    finally:
                        service.hub.release(trajectory)
                    progress.rendered += 1
                except (TrajectoryFailed, QueueFull) as error:
                    progress.failed += 1
                    progress.last_error = f"{entry.entry.id}: {error}"
                    log.warning("precompute of %s failed: %s", entry.entry.id, error)
        finally:
            progress.running = False
            log.info("lesson precompute: %d rendered, %d skipped, %d failed",
                     progress.rendered, progress.skipped, progress.failed)  # fmt: skip

    async def close(self) -> None:
        if self._precompute is not None:
            self._precompute.cancel()
            await asyncio.gather(self._precompute, return_exceptions=True)
