"""The classes' own models (lesson 10): the service's model with one more word, kept by the word's digest.

A class that taught its model a word (`teach.py`) paints the prompts that use the word
with its own copy: the same tokenizer, autoencoder and scheduler as the model itself
(shared, not copied), a text encoder and UNet copied once and given the taught tensors.
Every other prompt of the class is painted by the model itself, so lessons' pictures stay
shared by every class. Copies are built once per digest (about 20 MB each for Shapes) and
the least recently used are dropped beyond `KEPT`, except those a queued or running picture
holds (`hold`, `let_go`: the scheduler's, from a picture's queueing to its end); one dropped
is built again from the class's stored word when asked for.
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict

from services.inference.diffusion.models import DiffusionModel
from services.inference.diffusion.teach import TaughtWord, apply

KEPT = 16  # class models kept in memory at once


def with_word(model: DiffusionModel, taught: TaughtWord) -> DiffusionModel:
    """A copy of `model` that knows `taught`'s word; the original is untouched."""
    # Shares the tokenizer, the VAE, the preview decoder, the card; its own text encoder, UNet and probe.
    variant = model.with_parts(copy.deepcopy(model.text_encoder), copy.deepcopy(model.unet))
    apply(variant, taught)  # its weights, and the word's pieces counted as learned
    for module in (variant.text_encoder, variant.unet):
        module.eval().requires_grad_(False)
    variant.revision = f"{model.revision}+{taught.digest()}"
    variant.input_norms([])  # read from its new text encoder now, not at its first start on the worker
    return variant


class TaughtModels:
    """The model itself and the class models built from it, by the digest of their word."""

    def __init__(self, model: DiffusionModel, kept: int = KEPT) -> None:
        self.model, self.kept = model, kept
        self._models: OrderedDict[str, DiffusionModel] = OrderedDict()
        self._held: dict[str, int] = {}  # digest -> pictures queued or running with it
        self._lock = threading.Lock()  # the worker reads, the event loop's threads add

    def has(self, digest: str) -> bool:
        with self._lock:
            return digest in self._models

    def add(self, taught: TaughtWord) -> str:
        """Build the class model for `taught` (if not built yet); its digest."""
        digest = taught.digest()
        if not self.has(digest):
            variant = with_word(self.model, taught)
            with self._lock:
                self._models[digest] = variant
                self._drop_beyond_kept()
        return digest

    def _drop_beyond_kept(self) -> None:
        """The least recently used beyond `kept`, never the newest nor one a picture holds (then more stay a while)."""
        free = [digest for digest in list(self._models)[:-1] if not self._held.get(digest)]
        for digest in free[: max(0, len(self._models) - self.kept)]:
            del self._models[digest]

    def hold(self, digest: str) -> None:
        """A picture painted by this class model is queued: it stays built until `let_go`."""
        if digest:
            with self._lock:
                self._held[digest] = self._held.get(digest, 0) + 1

    def let_go(self, digest: str) -> None:
        """That picture ended (done, cancelled or failed)."""
        if digest:
            with self._lock:
                left = self._held.get(digest, 0) - 1
                if left > 0:
                    self._held[digest] = left
                else:
                    self._held.pop(digest, None)
                    self._drop_beyond_kept()

    def model_for(self, digest: str) -> DiffusionModel | None:
        """The model that paints a spec with this `taught` digest ("": the model itself); None if not built."""
        if not digest:
            return self.model
        with self._lock:
            variant = self._models.get(digest)
            if variant is not None:
                self._models.move_to_end(digest)
            return variant
