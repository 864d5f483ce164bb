"""What a model was trained on: its training pictures drawn again, in order, and the runs that used them.

Shapes' training pictures were never stored: `services/shapes/train.py`
(`encode_pictures`) drew them from `random.Random(seed + 1)` with
`services/common/shapes_data.py` (the training program's `data`), one after another, and its training record
(`model/training.json`) says how many and with which seed. Drawing the same
sequence again gives the very pictures and captions the model learned from
(tests/unit/test_training_set.py checks the sequence against `data.batch`).
The denoiser's first run used all of them (40,000); the run that taught its
words where to look used the first 20,000 of the same sequence. Other models'
training pictures are not here, and the answer says so in a sentence.
"""

from __future__ import annotations

import functools
import json
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from services.common import shapes_data as data
from services.common.api import pb
from services.common.codecs import encode_image
from services.inference.diffusion.models import SHAPES, SHAPES_DIR, TINY, DiffusionModel

PAGE_DEFAULT = 12
PAGE_MAX = 48  # pictures in one answer: 48 PNGs of 64 px are about 15 KB
TRAINING_RECORD = "training.json"
CHECKPOINTS = "checkpoints"  # beside the model's folder: pictures from checkpoints of its recipe (lesson 9)
SD_UNAVAILABLE = (
    "Stable Diffusion learned from billions of pictures and captions collected from the web (subsets of "
    "LAION-5B); they are not available here."
)
RANDOM_UNAVAILABLE = "This model has random weights: it was never trained, so it has no training pictures to show."
OTHER_UNAVAILABLE = "This model's training pictures are not available here."
# The training program's words for its runs, as a student reads them.
_DENOISER = "The denoiser and the text encoder learned to paint from captions"
_ROUTING = "Only the part that decides where each word looks in the picture (the cross-attention) trained again"


@dataclass(frozen=True)
class Run:
    """One training run of the denoiser, as its record says."""

    what: str
    pictures: int
    steps: int
    batch_size: int
    seconds: int

    def to_proto(self) -> pb.TrainingRun:
        return pb.TrainingRun(what=self.what, pictures=self.pictures, steps=self.steps, batch_size=self.batch_size,
                              seconds=self.seconds, first_picture=0)  # fmt: skip


def training_specs(seed: int, count: int) -> list[data.ShapeSpec]:
    """The first `count` training pictures' contents, in the order train.py's `encode_pictures` drew them."""
    rng = random.Random(seed + 1)  # encode_pictures' generator (the autoencoder's pictures used `seed`)
    return [data.sample_spec(rng) for _ in range(count)]


def picture_of(spec: data.ShapeSpec) -> np.ndarray:
    """The training picture a spec describes, as [64, 64, 3] uint8, drawn exactly as in training."""
    return np.asarray(data.draw(spec, data.IMAGE_SIZE), dtype=np.uint8)


class TrainingSet:
    """The Shapes model's training pictures, drawn again from its record's seed, and the runs that used them."""

    def __init__(self, record: dict) -> None:
        # The record is the last run's; the run it started from is nested under `started_from_training`.
        chain = []
        while record:
            chain.append(record)
            record = record.get("started_from_training") or {}
        chain.reverse()  # first run first
        self.seed = int(chain[0]["config"]["seed"])
        if any(int(r["config"]["seed"]) != self.seed for r in chain):
            raise ValueError("the training runs used different seeds: their pictures are different sets")
        self.size = max(int(r["config"]["pictures"]) for r in chain)
        self.runs = tuple(
            Run(
                what=_ROUTING if r["config"].get("train_only") == "attention-routing" else _DENOISER,
                pictures=int(r["config"]["pictures"]),  # the first `pictures` of the one sequence
                steps=int(r["config"]["unet_steps"]),
                batch_size=int(r["config"]["unet_batch"]),
                seconds=int(r.get("seconds", 0)),
            )
            for r in chain
        )
        self.specs = training_specs(self.seed, self.size)
        self.copies = Counter(self.specs)  # a caption naming its place always draws the same picture
        self.source = (
            f"Drawn again by services/common/shapes_data.py (sample_spec, then draw) from "
            f"random.Random({self.seed + 1}), in order, as services/shapes/train.py drew them: "
            f"picture 0 is the first it drew."
        )

    @classmethod
    def of(cls, model: DiffusionModel) -> TrainingSet | str:
        """The model's training set, or the sentence saying why it is not available here."""
        if model.model_id == SHAPES:
            return cls(json.loads((Path(SHAPES_DIR) / TRAINING_RECORD).read_text()))
        if model.model_id == TINY:
            return RANDOM_UNAVAILABLE
        if model.card.family == "stable-diffusion":
            return SD_UNAVAILABLE
        return OTHER_UNAVAILABLE

    def picture(self, index: int) -> pb.TrainingPicture:
        spec = self.specs[index]
        return pb.TrainingPicture(
            index=index,
            caption=spec.caption,
            image=encode_image(picture_of(spec), "image/png"),
            copies_in_training=self.copies[spec],
        )

    @functools.cached_property
    def checkpoints(self) -> tuple[list[pb.TrainingCheckpoint], str]:
        """The pictures kept from checkpoints of a run of the recipe (`services/shapes/checkpoints.py`), if any."""
        folder = Path(SHAPES_DIR).parent / CHECKPOINTS
        if not (folder / "checkpoints.json").is_file():
            return [], ""
        record = json.loads((folder / "checkpoints.json").read_text())
        grid = np.asarray(Image.open(folder / "checkpoints.png").convert("RGB"))
        size = data.IMAGE_SIZE
        kept = [
            pb.TrainingCheckpoint(
                step=step,
                caption=caption,
                finished=step == record.get("finished_step"),
                image=encode_image(
                    grid[row * size : (row + 1) * size, column * size : (column + 1) * size], "image/png"
                ),
            )
            for column, step in enumerate(record["steps"])
            for row, caption in enumerate(record["captions"])
        ]
        return kept, f"{record['made_by']} {record['painted'].capitalize()}."

    def page(self, offset: int, count: int) -> pb.TrainingSamplesResponse:
        """Pictures `offset` onwards (`count` of them, at most PAGE_MAX; none past the set's end)."""
        offset = min(max(0, offset), self.size)
        count = min(PAGE_MAX, count if count > 0 else PAGE_DEFAULT, self.size - offset)
        checkpoints, run = self.checkpoints
        return pb.TrainingSamplesResponse(
            available=True,
            checkpoints=checkpoints,
            checkpoints_run=run,
            pictures=[self.picture(i) for i in range(offset, offset + count)],
            training_set_size=self.size,
            runs=[run.to_proto() for run in self.runs],
            source=self.source,
            offset=offset,
        )
