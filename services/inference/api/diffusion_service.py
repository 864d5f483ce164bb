"""The DiffusionService adapter: gRPC requests in, the rooms' answers out, nothing else.

Every decision (what is allowed, who is refused and why) is the Classroom's, or
for what a class shares (present mode, quick checks, gallery) Together's; a
refusal raised anywhere in a handler reaches the client as the status it carries
(`refusals.py`; `register.add_service` registers every handler that way). Requests arrive
as bytes and are read here too, so bytes that are not a message, or a message far
larger than any legal one, get INVALID_ARGUMENT with a sentence.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import grpc

from services.common.api import (
    ADDRESS_METADATA,
    CLASS_METADATA,
    LESSON_METADATA,
    NAME_METADATA,
    RESUME_METADATA,
    STUDENT_METADATA,
    pb,
)
from services.common.i18n import N_, Sentence
from services.inference.api.attached import Attached, Stopping
from services.inference.api.replies import stats_message
from services.inference.diffusion.jobs import Requester
from services.inference.learned.learned import Learned
from services.inference.refusals import RequestError
from services.inference.together.together import Together
from services.inference.trajectories import frames


def text_metadata(context: grpc.aio.ServicerContext, key: str) -> str:
    """A UTF-8 (-bin) metadata value the front end sent, such as the student's name, or ""."""
    for name, value in context.invocation_metadata() or ():
        if name == key:
            return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    return ""


def requester(context: grpc.aio.ServicerContext) -> Requester:
    """Who asks, as the front end says (no id: the connection stands in)."""
    student = text_metadata(context, STUDENT_METADATA) or str(context.peer())
    return Requester(
        student,
        text_metadata(context, NAME_METADATA),
        text_metadata(context, CLASS_METADATA),
        text_metadata(context, ADDRESS_METADATA),
    )


class DiffusionService(Attached):
    """Serves the Classroom it is given; answers UNAVAILABLE (the model is loading) until then."""

    async def GetModelInfo(
        self, request: pb.GetModelInfoRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetModelInfoResponse:
        return self.ready().model_info()

    async def Tokenize(self, request: pb.TokenizeRequest, context: grpc.aio.ServicerContext) -> pb.TokenizeResponse:
        classroom = self.ready()
        return frames.tokens_message(await classroom.tokenize(request.prompt, requester(context)))

    async def EncodePrompt(
        self, request: pb.EncodePromptRequest, context: grpc.aio.ServicerContext
    ) -> pb.EncodePromptResponse:
        classroom = self.ready()
        encoding = await classroom.encode(request.prompt, requester(context))
        # Its copies to the host wait for the device (on a GPU, for a class's UNet call): not on the event loop.
        message = await asyncio.to_thread(frames.encoding_message, request.prompt, encoding)
        return pb.EncodePromptResponse(encoding=message)

    async def Generate(self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        classroom = self.ready()
        if self.stopping:
            raise Stopping()  # (asked again, by the client, of another replica)
        lesson = text_metadata(context, LESSON_METADATA)
        resume = next((bytes(v) for k, v in context.invocation_metadata() or () if k == RESUME_METADATA), b"")
        who = requester(context)
        trajectory, source, spec = await classroom.open(request, who, lesson, resume)
        try:
            status = pb.StreamStatus(
                source=source,
                cache_hit=source == pb.TRAJECTORY_SOURCE_CACHE,
                trajectory_key=trajectory.key,
                resume_ticket=classroom.resume_ticket(who, trajectory.key),
            )
            first, ended = True, False
            async for message, frame_count in trajectory.follow(spec.include, pb.GenerateResponse(status=status)):
                if not first and source != pb.TRAJECTORY_SOURCE_COMPUTED:
                    await classroom.hold_replay()
                if not ended and trajectory.made:  # the student's turn is free before the picture arrives
                    ended = True
                    await classroom.picture_ended(trajectory)
                yield message  # already serialized (see register.add_service)
                classroom.sent(frame_count)
                first = False
        finally:
            # The client went away, or the stream ended: the last reader's leaving stops the work.
            classroom.release(trajectory)

    async def ListLessons(
        self, request: pb.ListLessonsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListLessonsResponse:
        classroom, together = self.ready(), self.together()
        listed = await classroom.lessons(request.collection)
        return pb.ListLessonsResponse(
            catalog_version=listed.catalog_version,
            collections=[
                pb.LessonCollection(
                    id=c.id,
                    lesson=c.lesson,
                    title=c.title,
                    description=c.description,
                    questions=[
                        pb.LessonQuestion(id=q.id, question=q.question, choices=q.choices)
                        for q in together.questions_of(c.id)
                    ],
                )
                for c in listed.collections
            ],
            entries=[
                pb.LessonEntry(
                    id=e.entry.id,
                    collection=e.entry.collection,
                    request=e.request,
                    cache_state=state,
                    trajectory_key=e.key,
                    labels=e.entry.labels,
                )
                for e, state in listed.entries
            ],
            cache_available=listed.cache_available,
        )

    async def JoinClass(self, request: pb.JoinClassRequest, context: grpc.aio.ServicerContext) -> pb.JoinClassResponse:
        classroom = self.ready()
        who = dataclasses.replace(requester(context), name=request.name, address=request.address)
        return pb.JoinClassResponse(renew_within_seconds=await classroom.join(who, request.session, request.browser))

    # -- teaching together: the class's shared state, the gallery, quick checks ----------

    async def _in_class(self, context: grpc.aio.ServicerContext, student: bool = False) -> tuple[Together, Requester]:
        """Who asks, checked by the Classroom, and the class's shared room; `student`: a student's own act."""
        classroom = self.ready()
        if student and not text_metadata(context, STUDENT_METADATA):
            raise RequestError(
                [("student", Sentence(N_("Sharing, answering and drawing need the student's id (x-student-id).")))]
            )
        return self.together(), await classroom.in_class(requester(context))

    async def WatchClass(
        self, request: pb.WatchClassRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ClassState]:
        together, who = await self._in_class(context)
        async for state in together.watch(who.classroom):
            yield state

    async def GetClassState(self, request: pb.GetClassStateRequest, context: grpc.aio.ServicerContext) -> pb.ClassState:
        together, who = await self._in_class(context)
        return await together.state(who.classroom)

    async def ShareToGallery(
        self, request: pb.ShareToGalleryRequest, context: grpc.aio.ServicerContext
    ) -> pb.ShareToGalleryResponse:
        together, who = await self._in_class(context, student=True)
        item = await together.share(who.classroom, who.student, who.name, request.trajectory_key)
        return pb.ShareToGalleryResponse(item=item)

    async def ListGallery(
        self, request: pb.ListGalleryRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListGalleryResponse:
        together, who = await self._in_class(context)
        return pb.ListGalleryResponse(items=await together.shown(who.classroom))

    async def GetClassMap(self, request: pb.GetClassMapRequest, context: grpc.aio.ServicerContext) -> pb.ClassMap:
        together, who = await self._in_class(context)
        return await together.class_map(who.classroom, include_pending=False)

    async def AnswerQuickCheck(
        self, request: pb.AnswerQuickCheckRequest, context: grpc.aio.ServicerContext
    ) -> pb.AnswerQuickCheckResponse:
        together, who = await self._in_class(context, student=True)
        choice = await together.answer(who.classroom, who.student, request.question_id, request.choice)
        return pb.AnswerQuickCheckResponse(choice=choice)

    # -- what the model learned from (lesson 9) -------------------------------------

    async def _learned(self, context: grpc.aio.ServicerContext) -> Learned:
        """Lesson 9's room, for one still in the class, within their allowance of text calls (as Tokenize)."""
        classroom = self.ready()
        who = await classroom.in_class(requester(context))
        await classroom.text_limiter.take(who.student)
        return classroom.learned

    async def TrainingSamples(
        self, request: pb.TrainingSamplesRequest, context: grpc.aio.ServicerContext
    ) -> pb.TrainingSamplesResponse:
        return await (await self._learned(context)).samples(request.offset, request.count)

    async def NearestTraining(
        self, request: pb.NearestTrainingRequest, context: grpc.aio.ServicerContext
    ) -> pb.NearestTrainingResponse:
        return await (await self._learned(context)).nearest(request.trajectory_key, request.k)

    # -- teach it a new word (lesson 10) ------------------------------------------------

    async def SubmitDrawing(
        self, request: pb.SubmitDrawingRequest, context: grpc.aio.ServicerContext
    ) -> pb.SubmitDrawingResponse:
        _, who = await self._in_class(context, student=True)
        drawing_id, yours, drawings = await self.ready().teaching.submit(who, request.png)
        return pb.SubmitDrawingResponse(drawing_id=drawing_id, yours=yours, class_drawings=drawings)

    async def GetTeaching(self, request: pb.GetTeachingRequest, context: grpc.aio.ServicerContext) -> pb.TeachingState:
        _, who = await self._in_class(context)
        student = who.student if text_metadata(context, STUDENT_METADATA) else ""
        return await self.ready().teaching.state(who.classroom, student)

    async def GetServerStats(
        self, request: pb.GetServerStatsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetServerStatsResponse:
        classroom = self.ready()
        return stats_message(classroom.stats())
