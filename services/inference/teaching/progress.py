"""A class's word record (lesson 10): what it is learning or has learned, and how the training went.

One small JSON record per class (`teaching.WORD`), written by the replica that trains
and read by every page: the phase, the word, the loss at every step, the latest sheet
of sample pictures, and the taught word's digest and token ids (which prompts the
class's own model paints).
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from services.common.api import pb
from services.inference.diffusion.training import Ended

STALE = "The server that was teaching the word stopped before it was done. Press Teach to start again."


@dataclass(frozen=True)
class WordState:
    phase: int = pb.TEACHING_PHASE_DRAWING
    word: str = ""  # being taught, or last taught
    step: int = 0
    total: int = 0
    losses: list[float] = field(default_factory=list)
    new_word_losses: list[float] = field(default_factory=list)  # the half of each step's batch that was drawn
    known_losses: list[float] = field(default_factory=list)  # the half that showed the four known shapes
    samples_png: bytes = b""
    samples_step: int = 0
    samples_prompts: list[str] = field(default_factory=list)
    message: str = ""
    seconds: float = 0.0
    taught_word: str = ""  # the word the class's model knows now
    taught_digest: str = ""
    token_ids: list[int] = field(default_factory=list)
    beat: float = 0.0  # unix time of the training's last report
    stop: bool = False  # the teacher asked the training to stop (through any replica)

    @property
    def training(self) -> bool:
        return self.phase == pb.TEACHING_PHASE_TRAINING

    def payload(self) -> bytes:
        fields = dataclasses.asdict(self)
        fields["samples_png"] = base64.b64encode(self.samples_png).decode()
        return json.dumps(fields).encode()

    @classmethod
    def from_payload(cls, payload: bytes | None) -> WordState:
        if not payload:
            return cls()
        fields = json.loads(payload)
        fields["samples_png"] = base64.b64decode(fields.get("samples_png", ""))
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in fields.items() if k in known})

    def checked(self, now: float, stale_s: float) -> WordState:
        """As it stands: a training that has not reported for `stale_s` stopped with its server."""
        if self.training and now - self.beat > stale_s:
            return dataclasses.replace(self, phase=pb.TEACHING_PHASE_FAILED, message=STALE)
        return self

    def ended(self, ended: Ended, drawings: int) -> WordState:
        """The state once the training ended: the new word learned, or why not (the old word stays)."""
        if ended.taught is not None and not ended.stopped:
            taught = ended.taught
            return dataclasses.replace(
                self,
                phase=pb.TEACHING_PHASE_TAUGHT,
                taught_word=self.word,
                taught_digest=taught.digest(),
                token_ids=list(taught.token_ids),
                stop=False,
                message=f'The class\'s model learned "{self.word}" from {drawings} drawings in {self.step} '
                f"steps ({self.seconds:.0f} seconds). Try it in a prompt.",
            )
        kept = f'It still knows "{self.taught_word}".' if self.taught_word else "It knows no new word."
        if ended.stopped:
            stopped = f"The teacher stopped the training at step {self.step}. {kept}"
            return dataclasses.replace(self, phase=pb.TEACHING_PHASE_STOPPED, stop=False, message=stopped)
        failed = f"The training failed at step {self.step}. {kept}"
        return dataclasses.replace(self, phase=pb.TEACHING_PHASE_FAILED, stop=False, message=failed)

    def to_proto(self, teachable: bool) -> pb.TeachingState:
        return pb.TeachingState(
            phase=self.phase,
            word=self.word,
            step=self.step,
            total_steps=self.total,
            losses=self.losses,
            new_word_losses=self.new_word_losses,
            known_losses=self.known_losses,
            samples_png=self.samples_png,
            samples_step=self.samples_step,
            samples_prompts=self.samples_prompts,
            message=self.message,
            seconds=self.seconds,
            taught_word=self.taught_word,
            teachable=teachable,
        )


def samples_sheet(pictures: list[np.ndarray], gap: int = 2) -> bytes:
    """Pictures side by side on one light sheet, as a PNG."""
    height = max(p.shape[0] for p in pictures)
    width = sum(p.shape[1] for p in pictures) + gap * (len(pictures) - 1)
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    x = 0
    for picture in pictures:
        sheet.paste(Image.fromarray(np.asarray(picture, dtype=np.uint8)), (x, 0))
        x += picture.shape[1] + gap
    out = io.BytesIO()
    sheet.save(out, format="PNG")
    return out.getvalue()
