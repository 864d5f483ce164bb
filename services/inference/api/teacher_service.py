"""The TeacherService adapter: the teacher's page's calls, translated to and from the Classroom and Together.

Every call needs the teacher code (`x-teacher-code`). Students' names are shown,
their prompts only when the teacher asks.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator

import grpc

from services.common.api import TEACHER_METADATA, pb, pb_grpc
from services.inference.api.attached import Attached
from services.inference.api.replies import progress_message, stats_message
from services.inference.classroom.classroom import Classroom
from services.inference.classroom.validation import check_name
from services.inference.refusals import NO_TEACHER_CODE, WRONG_TEACHER_CODE, TeacherOnly
from services.inference.teaching.teaching import Teaching
from services.inference.together.together import Together


class TeacherService(Attached, pb_grpc.TeacherServiceServicer):
    """Serves the same Classroom as the DiffusionService beside it, to the holder of the teacher code."""

    def __init__(self, teacher_code: str | None) -> None:
        super().__init__()
        self.teacher_code = teacher_code

    async def _classroom(self, context: grpc.aio.ServicerContext) -> Classroom:
        if not self.teacher_code:
            raise TeacherOnly(NO_TEACHER_CODE)
        sent = dict(context.invocation_metadata() or ()).get(TEACHER_METADATA, "")
        if not hmac.compare_digest(str(sent).encode(), str(self.teacher_code).encode()):
            raise TeacherOnly(WRONG_TEACHER_CODE)
        return self.ready()

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
        device, used, total = classroom.device()
        paused, max_batch_size, average_batch_size = classroom.batching()
        return pb.GetClassroomResponse(
            jobs=jobs,
            paused=paused,
            stats=stats,
            cache_hit_rate=(stats.cache_hits + stats.single_flight_joins) / streams if streams else 0.0,
            device=device,
            max_batch_size=max_batch_size,
            average_batch_size=average_batch_size,
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
                for entry in await classroom.students()
            ],
        )

    async def RemoveStudent(
        self, request: pb.RemoveStudentRequest, context: grpc.aio.ServicerContext
    ) -> pb.RemoveStudentResponse:
        classroom = await self._classroom(context)
        changed, stopped = await classroom.remove_student(request.class_name, request.name, request.let_back)
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

    # -- teaching together ------------------------------------------------------------

    async def _for_class(self, context: grpc.aio.ServicerContext, class_name: str) -> tuple[Together, str]:
        """After the teacher code: the class's shared room and the class named (plain text, as a display name)."""
        await self._classroom(context)
        return self.together(), check_name(class_name)

    async def SetPresent(
        self, request: pb.SetPresentRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetPresentResponse:
        together, name = await self._for_class(context, request.class_name)
        state = await together.present(
            name, request.leading, request.example_id, request.step, request.show_map, request.lesson
        )
        return pb.SetPresentResponse(state=state)

    async def SetClassLanguage(
        self, request: pb.SetClassLanguageRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetClassLanguageResponse:
        together, name = await self._for_class(context, request.class_name)
        return pb.SetClassLanguageResponse(state=await together.set_language(name, request.language))

    async def ListSubmissions(
        self, request: pb.ListSubmissionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListSubmissionsResponse:
        together, name = await self._for_class(context, request.class_name)
        items, approval_required = await together.submissions(name)
        return pb.ListSubmissionsResponse(items=items, approval_required=approval_required)

    async def ReviewSubmission(
        self, request: pb.ReviewSubmissionRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReviewSubmissionResponse:
        together, name = await self._for_class(context, request.class_name)
        return pb.ReviewSubmissionResponse(item=await together.review(name, request.item_id, request.status))

    async def SetGalleryApproval(
        self, request: pb.SetGalleryApprovalRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetGalleryApprovalResponse:
        together, name = await self._for_class(context, request.class_name)
        required = await together.set_approval(name, request.approval_required)
        return pb.SetGalleryApprovalResponse(approval_required=required)

    async def ClearGallery(
        self, request: pb.ClearGalleryRequest, context: grpc.aio.ServicerContext
    ) -> pb.ClearGalleryResponse:
        together, name = await self._for_class(context, request.class_name)
        return pb.ClearGalleryResponse(cleared=await together.clear_gallery(name))

    async def GetSubmissionMap(
        self, request: pb.GetSubmissionMapRequest, context: grpc.aio.ServicerContext
    ) -> pb.ClassMap:
        together, name = await self._for_class(context, request.class_name)
        return await together.class_map(name, include_pending=True)

    async def AskQuickCheck(
        self, request: pb.AskQuickCheckRequest, context: grpc.aio.ServicerContext
    ) -> pb.AskQuickCheckResponse:
        together, name = await self._for_class(context, request.class_name)
        check = await together.ask(
            name, request.lesson_question_id, request.question, list(request.choices), request.answer
        )
        return pb.AskQuickCheckResponse(quick_check=check.message(for_teacher=True))

    async def GetQuickCheck(
        self, request: pb.GetQuickCheckRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetQuickCheckResponse:
        together, name = await self._for_class(context, request.class_name)
        state = await together.state(name, for_teacher=True)
        return pb.GetQuickCheckResponse(quick_check=state.quick_check if state.HasField("quick_check") else None)

    async def RevealQuickCheck(
        self, request: pb.RevealQuickCheckRequest, context: grpc.aio.ServicerContext
    ) -> pb.RevealQuickCheckResponse:
        together, name = await self._for_class(context, request.class_name)
        check = await together.reveal(name)
        return pb.RevealQuickCheckResponse(quick_check=check.message(for_teacher=True) if check else None)

    async def CloseQuickCheck(
        self, request: pb.CloseQuickCheckRequest, context: grpc.aio.ServicerContext
    ) -> pb.CloseQuickCheckResponse:
        together, name = await self._for_class(context, request.class_name)
        await together.close_check(name)
        return pb.CloseQuickCheckResponse()

    # -- teach it a new word (lesson 10) ------------------------------------------------

    async def _teaching(self, context: grpc.aio.ServicerContext, class_name: str) -> tuple[Teaching, str]:
        """After the teacher code: lesson 10's room and the class named."""
        classroom = await self._classroom(context)
        return classroom.teaching, check_name(class_name)

    async def ListDrawings(
        self, request: pb.ListDrawingsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListDrawingsResponse:
        teaching, name = await self._teaching(context, request.class_name)
        drawings = await teaching.drawings(name)
        return pb.ListDrawingsResponse(
            drawings=[pb.ClassDrawing(drawing_id=d.drawing_id, student_name=d.name, png=d.png) for d in drawings]
        )

    async def RemoveDrawing(
        self, request: pb.RemoveDrawingRequest, context: grpc.aio.ServicerContext
    ) -> pb.RemoveDrawingResponse:
        teaching, name = await self._teaching(context, request.class_name)
        return pb.RemoveDrawingResponse(removed=await teaching.remove(name, request.drawing_id))

    async def TeachWord(
        self, request: pb.TeachWordRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.TeachingState]:
        teaching, name = await self._teaching(context, request.class_name)
        async for state in teaching.teach(name, request.word, request.steps):
            yield state

    async def StopTeaching(
        self, request: pb.StopTeachingRequest, context: grpc.aio.ServicerContext
    ) -> pb.StopTeachingResponse:
        teaching, name = await self._teaching(context, request.class_name)
        return pb.StopTeachingResponse(stopped=await teaching.stop(name))

    async def ResetWord(self, request: pb.ResetWordRequest, context: grpc.aio.ServicerContext) -> pb.ResetWordResponse:
        teaching, name = await self._teaching(context, request.class_name)
        return pb.ResetWordResponse(changed=await teaching.reset(name, request.drawings_too))
