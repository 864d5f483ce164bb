"""The room for lesson 9: what the model learned from, and whether a picture it made is a copy.

Who may ask: the front end (it holds the service token), for a student still in
the class, within their allowance of text calls (both checked by the API, as for
Tokenize). What it costs is bounded here: a page is at most PAGE_MAX pictures drawn by a program;
a search is one autoencoder encode and decode of one picture and a comparison
with the sample's distinct pictures (tens of milliseconds), one search at a time,
its answer kept per picture. The picture must be one this service made and kept
(signed with its secret): nothing is uploaded, so nobody can search with a
picture of their own, and a lie about the key finds nothing. The sample is drawn
and encoded once, on the first search (seconds), never per request.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from google.rpc import code_pb2

from services.common.api import pb
from services.common.codecs import decode_image
from services.inference.diffusion.models import DiffusionModel
from services.inference.learned.nearest import K_DEFAULT, K_MAX, TrainingSample
from services.inference.learned.training_set import TrainingSet
from services.inference.refusals import Refusal
from services.inference.trajectories.cache import TrajectoryStore

ANSWERS_KEPT = 256  # searches kept, by picture and k (at most K_MAX; a few PNGs each)


class PictureNotKept(Refusal):
    """The picture to search for is not one this service made and still keeps."""

    code = code_pb2.NOT_FOUND

    def __init__(self) -> None:
        super().__init__(
            "This picture is not kept on the image server any more, so it can't be compared. Make it again."
        )


class PicturesUnavailable(Refusal):
    """The pictures this service made live in Redis, which is away or not configured."""

    code = code_pb2.FAILED_PRECONDITION

    def __init__(self) -> None:
        super().__init__(
            "Comparing your picture needs the image server's picture store, which is not available right now."
        )


class Learned:
    """A model's training pictures, page by page, and the nearest ones to a picture it made."""

    def __init__(self, model: DiffusionModel, store: TrajectoryStore) -> None:
        self.model, self.store = model, store
        self._training: TrainingSet | str | None = None
        self._sample: TrainingSample | None = None
        self._lock = asyncio.Lock()  # one build, one search at a time
        self._answers: OrderedDict[tuple[str, int], pb.NearestTrainingResponse] = OrderedDict()

    async def training(self) -> TrainingSet | str:
        """The training set (drawn once, in a thread), or the sentence saying why it is not here."""
        if self._training is None:
            async with self._lock:
                if self._training is None:
                    self._training = await asyncio.to_thread(TrainingSet.of, self.model)
        return self._training

    async def samples(self, offset: int, count: int) -> pb.TrainingSamplesResponse:
        training = await self.training()
        if isinstance(training, str):
            return pb.TrainingSamplesResponse(available=False, unavailable_reason=training)
        return await asyncio.to_thread(training.page, offset, count)

    async def nearest(self, key: str, k: int) -> pb.NearestTrainingResponse:
        training = await self.training()
        if isinstance(training, str):
            return pb.NearestTrainingResponse(available=False, unavailable_reason=training)
        if not key or len(key) > 64 or not key.isalnum():
            raise PictureNotKept()
        k = min(K_MAX, k if k > 0 else K_DEFAULT)  # before it keys the answers: k = 9, 10, 11... are one search
        if (key, k) in self._answers:
            self._answers.move_to_end((key, k))
            return self._answers[key, k]
        found = await self.store.load(key)  # checked: signed with this server's secret, whole, its own key
        if found is None:
            raise PictureNotKept() if self.store.available else PicturesUnavailable()
        last = found[0].events[-1]
        if not last.HasField("final") or not last.final.HasField("image") or last.final.safety_flagged:
            raise PictureNotKept()
        picture = decode_image(last.final.image)
        async with self._lock:
            if self._sample is None:
                self._sample = await asyncio.to_thread(TrainingSample, self.model, training)
            answer = await asyncio.to_thread(self._sample.search, picture, k)
        self._answers[key, k] = answer
        while len(self._answers) > ANSWERS_KEPT:
            self._answers.popitem(last=False)
        return answer
