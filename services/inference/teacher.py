"""The TeacherService adapter: the teacher's page's calls, translated to and from the Classroom.

Every call needs the teacher code (`x-teacher-code`). Students' names are shown,
their prompts only when the teacher asks.
"""

from __future__ import annotations

import hmac

import grpc

from services.common.api import TEACHER_METADATA, pb, pb_grpc
from services.inference.attached import Attached
from services.inference.classroom import Classroom
from services.inference.refusals import NO_TEACHER_CODE, WRONG_TEACHER_CODE, TeacherOnly, refuse
from services.inference.replies import progress_message, stats_message


class TeacherService(Attached, pb_grpc.TeacherServiceServicer):
    """Serves the same Classroom as the DiffusionService beside it, to the holder of the teacher code."""

    def __init__(self, teacher_code: str | None) -> None:
        super().__init__()
        self.teacher_code = teacher_code

    async def _classroom(self, context: grpc.aio.ServicerContext) -> Classroom:
        if not self.teacher_code:
            await refuse(context, TeacherOnly(NO_TEACHER_CODE))
        sent = dict(context.invocation_metadata() or ()).get(TEACHER_METADATA, "")
        if not hmac.compare_digest(str(sent).encode(), str(self.teacher_code).encode()):
            await refuse(context, TeacherOnly(WRONG_TEACHER_CODE))
        return await self.ready(context)

    async def GetClassroom(
        self, request: pb.GetClassroomRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetClassroomResponse:
        classroom = await self._classroom(context)
        stats = stats_message(classroom.stats())
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
            for job in classroom.jobs()
        ]
        blocked = [
            pb.BlockedAttempt(
                student_name=b.student_name,
                unix_time=b.unix_time,
                prompt=b.prompt if request.include_prompts else "",
            )
            for b in classroom.blocked
        ]
        used, total = classroom.gpu_memory()
        return pb.GetClassroomResponse(
            jobs=jobs,
            paused=classroom.scheduler.paused,
            stats=stats,
            cache_hit_rate=(stats.cache_hits + stats.single_flight_joins) / streams if streams else 0.0,
            device=str(classroom.model.device),
            max_batch_size=classroom.scheduler.max_batch_size,
            average_batch_size=classroom.scheduler.average_batch,
            gpu_memory_used_bytes=used,
            gpu_memory_total_bytes=total,
            blocked=blocked,
            precompute=progress_message(classroom.precompute),
            students=[
                pb.ClassroomStudent(
                    name=entry.name,
                    class_name=entry.classroom,
                    seconds_since_seen=entry.seconds_since_seen,
                    joined_unix_time=entry.joined_unix,
                    removed=entry.removed,
                )
                for entry in classroom.students()
            ],
        )

    async def RemoveStudent(
        self, request: pb.RemoveStudentRequest, context: grpc.aio.ServicerContext
    ) -> pb.RemoveStudentResponse:
        classroom = await self._classroom(context)
        changed, stopped = classroom.remove_student(request.class_name, request.name, request.let_back)
        return pb.RemoveStudentResponse(changed=changed, stopped_generations=stopped)

    async def SetPaused(self, request: pb.SetPausedRequest, context: grpc.aio.ServicerContext) -> pb.SetPausedResponse:
        classroom = await self._classroom(context)
        return pb.SetPausedResponse(paused=classroom.pause(request.paused))

    async def ClearQueue(
        self, request: pb.ClearQueueRequest, context: grpc.aio.ServicerContext
    ) -> pb.ClearQueueResponse:
        classroom = await self._classroom(context)
        return pb.ClearQueueResponse(cleared=classroom.clear_queue())

    async def PrecomputeLessons(
        self, request: pb.PrecomputeLessonsRequest, context: grpc.aio.ServicerContext
    ) -> pb.PrecomputeLessonsResponse:
        classroom = await self._classroom(context)
        classroom.start_precompute()
        return pb.PrecomputeLessonsResponse(progress=progress_message(classroom.precompute))
