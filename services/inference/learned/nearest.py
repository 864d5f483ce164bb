"""Did it copy? The training pictures nearest to a picture the model made, over a stated sample of its training set.

The sample is the first SAMPLE_SIZE training pictures (in the order they were
drawn). Many are the very same picture: a caption that names its place always
draws the shape at the same spot, so "a red circle on the left" appears dozens
of times. The search runs over the sample's distinct pictures, each once, and
says how many copies of it the whole training set held; that is the kind of
heavy duplication under which Stable Diffusion was shown to reproduce training
pictures (Carlini et al. 2023).

Two distances, both root-mean-square: over the pictures' colour values (0-255,
at the model's size) and over their latents (each encoded by the model's own
autoencoder, posterior mean times its scaling factor, as training encoded its
pictures). The nearest are found by pixels, over every distinct picture of the
sample; their latent distances are then measured. The sample is drawn once, on
first use, and kept (SAMPLE_SIZE = 5,000 holds 1,428 distinct pictures: 17.5 MB,
drawn in about 0.3 s); a picture's latent is encoded when it is first a
neighbour, and kept (encoding all 1,428 would take 7 to 14 s on a 2-core CPU).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image as PILImage

from services.common.api import pb
from services.common.codecs import encode_image
from services.inference.diffusion.models import DiffusionModel
from services.inference.learned.training_set import TrainingSet, picture_of

SAMPLE_SIZE = 5000
K_DEFAULT = 4
K_MAX = 8
_ENCODE_BATCH = 128  # pictures per autoencoder call while the sample is encoded


def at_model_size(picture: np.ndarray, side: int) -> np.ndarray:
    """A [h, w, 3] uint8 picture at `side` x `side` (box-averaged, as the training pictures were shrunk)."""
    if picture.shape[:2] == (side, side):
        return picture
    return np.asarray(PILImage.fromarray(picture).resize((side, side), PILImage.Resampling.BOX), dtype=np.uint8)


@torch.inference_mode()
def encode_latents(model: DiffusionModel, pictures: np.ndarray) -> np.ndarray:
    """[n, h, w, 3] uint8 pictures as the denoiser's latents, flattened: [n, c*h/8*w/8] float32."""
    out = []
    for start in range(0, len(pictures), _ENCODE_BATCH):
        chunk = np.array(pictures[start : start + _ENCODE_BATCH])  # a copy: torch wants writable memory
        pixels = torch.from_numpy(chunk).permute(0, 3, 1, 2).float() / 127.5 - 1
        latent = model.vae.encode(pixels.to(model.device, model.dtype)).latent_dist.mean
        out.append((latent * model.vae.config.scaling_factor).float().flatten(1).cpu().numpy())
    return np.concatenate(out)


@torch.inference_mode()
def round_trip(model: DiffusionModel, latent: np.ndarray) -> np.ndarray:
    """A flattened latent decoded by the model's autoencoder: [h, w, 3] uint8."""
    side = round((latent.size / model.latent_channels) ** 0.5)
    shaped = torch.from_numpy(latent.reshape(1, model.latent_channels, side, side)).to(model.device, model.dtype)
    return model.decode(shaped)[0]


def rms(a: np.ndarray, b: np.ndarray) -> float:
    """Root-mean-square difference of two arrays of the same shape."""
    return float(np.sqrt(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


@dataclass(frozen=True)
class Neighbour:
    distinct: int  # which distinct picture of the sample
    pixel_distance: float
    latent_distance: float


class TrainingSample:
    """The first `size` training pictures, distinct ones once each, as pixels and as latents."""

    def __init__(self, model: DiffusionModel, training: TrainingSet, size: int = SAMPLE_SIZE) -> None:
        self.model, self.training = model, training
        self.size = min(size, training.size)
        first: dict[object, int] = {}
        for index, spec in enumerate(training.specs[: self.size]):
            first.setdefault(spec, index)
        self.indices = np.array(sorted(first.values()))  # each distinct picture's first place in the set
        self.pixels = np.stack([picture_of(training.specs[i]) for i in self.indices])  # [d, 64, 64, 3] uint8
        self._latents: dict[int, np.ndarray] = {}  # distinct picture -> its flattened latent, once asked

    @property
    def distinct(self) -> int:
        return len(self.indices)

    def latents(self, distinct: list[int]) -> np.ndarray:
        """The latents of some distinct sample pictures ([n, c*h*w] float32), encoded once each."""
        missing = [d for d in distinct if d not in self._latents]
        if missing:
            self._latents.update(zip(missing, encode_latents(self.model, self.pixels[missing]), strict=True))
        return np.stack([self._latents[d] for d in distinct])

    def nearest(self, picture: np.ndarray, latent: np.ndarray, k: int) -> list[Neighbour]:
        """The k distinct sample pictures nearest `picture` in pixels (exact, every one compared)."""
        flat = picture.reshape(1, -1).astype(np.int32)
        squared = np.empty(self.distinct, dtype=np.int64)
        for start in range(0, self.distinct, 256):  # in slices: a copy of the whole sample as int32 is 70 MB
            chunk = self.pixels[start : start + 256].reshape(-1, flat.shape[1]).astype(np.int32)
            squared[start : start + 256] = ((chunk - flat) ** 2).sum(axis=1)
        order = np.argsort(squared, kind="stable")[:k]
        latent_squared = ((self.latents([int(d) for d in order]) - latent.reshape(1, -1)) ** 2).mean(axis=1)
        return [
            Neighbour(int(d), float(np.sqrt(squared[d] / flat.shape[1])), float(np.sqrt(latent_squared[n])))
            for n, d in enumerate(order)
        ]

    def search(self, picture: np.ndarray, k: int) -> pb.NearestTrainingResponse:
        """The answer for one picture the model made ([h, w, 3] uint8, any size: shrunk to the model's)."""
        side = self.pixels.shape[1]
        picture = at_model_size(picture, side)
        latent = encode_latents(self.model, picture[None])[0]
        found = self.nearest(picture, latent, min(K_MAX, k if k > 0 else K_DEFAULT))
        closest = self.pixels[found[0].distinct]
        copy = round_trip(self.model, self.latents([found[0].distinct])[0])
        return pb.NearestTrainingResponse(
            available=True,
            picture=encode_image(picture, "image/png"),
            neighbours=[
                pb.TrainingNeighbour(
                    picture=self.training.picture(int(self.indices[n.distinct])),
                    pixel_distance=n.pixel_distance,
                    latent_distance=n.latent_distance,
                )
                for n in found
            ],
            sample_size=self.size,
            distinct_in_sample=self.distinct,
            training_set_size=self.training.size,
            copy_pixel_distance=rms(copy, closest),
        )
