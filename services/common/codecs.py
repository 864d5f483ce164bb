"""Tensors and images to and from their wire form, and the latent-to-RGB preview map."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image as PILImage

from services.common.api import pb

_NUMPY_DTYPES: dict[int, np.dtype] = {
    pb.D_TYPE_FLOAT16: np.dtype("<f2"),
    pb.D_TYPE_FLOAT32: np.dtype("<f4"),
}
_WIRE_DTYPES: dict[np.dtype, int] = {dtype: wire for wire, dtype in _NUMPY_DTYPES.items()}

# Linear map from the 4 channels of an SD 1.x latent to R, G, B (rows = latent
# channels). A cheap approximation of the VAE decoder, good enough to watch the
# picture form step by step; it is a preview, not the image.
LATENT_RGB_FACTORS = np.array(
    [
        [0.3512, 0.2297, 0.3227],
        [0.3250, 0.4974, 0.2350],
        [-0.2829, 0.1762, 0.2721],
        [-0.2120, -0.2616, -0.7177],
    ],
    dtype=np.float32,
)


@dataclass(frozen=True)
class PreviewMap:
    """A model's linear latent-to-RGB approximation: rgb = latent . factors + bias, in [-1, 1]."""

    factors: np.ndarray  # float32 [latent channels, 3]
    bias: np.ndarray  # float32 [3]

    @classmethod
    def from_lists(cls, factors: list[list[float]], bias: list[float]) -> PreviewMap:
        matrix, offset = np.array(factors, dtype=np.float32), np.array(bias, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[1] != 3 or offset.shape != (3,):
            raise ValueError(f"preview factors must be [channels, 3] with a bias of 3, got {matrix.shape}")
        return cls(matrix, offset)


# SD 1.x keeps its published factors, with no bias.
SD1_PREVIEW = PreviewMap(LATENT_RGB_FACTORS, np.zeros(3, dtype=np.float32))


def tensor_to_proto(array: np.ndarray, dtype: np.dtype | str = "<f2") -> pb.Tensor:
    """Pack an array as little-endian bytes of `dtype` (float16 unless told)."""
    wire_dtype = np.dtype(dtype).newbyteorder("<")
    data = np.ascontiguousarray(array, dtype=wire_dtype)
    return pb.Tensor(dtype=_WIRE_DTYPES[wire_dtype], shape=list(data.shape), data=data.tobytes())


def tensor_from_proto(tensor: pb.Tensor) -> np.ndarray:
    """Unpack a Tensor message into a (read-only) numpy array of its own dtype."""
    if tensor.dtype not in _NUMPY_DTYPES:
        raise ValueError(f"unknown tensor dtype {tensor.dtype}")
    return np.frombuffer(tensor.data, dtype=_NUMPY_DTYPES[tensor.dtype]).reshape(tuple(tensor.shape))


def latent_to_rgb(latent: np.ndarray, preview: PreviewMap = SD1_PREVIEW) -> np.ndarray:
    """Approximate the colours of a [channels, h, w] latent: an [h, w, 3] uint8 picture."""
    if latent.ndim != 3 or latent.shape[0] != preview.factors.shape[0]:
        raise ValueError(f"expected a latent of shape [{preview.factors.shape[0]}, h, w], got {list(latent.shape)}")
    # One small matrix product ([h * w, channels] x [channels, 3]) and the rest in place: a third of
    # an einsum's time, for two previews in every frame of every student's stream.
    channels, height, width = latent.shape
    rgb = latent.reshape(channels, -1).astype(np.float32).T @ preview.factors
    rgb += preview.bias
    np.clip(rgb, -1.0, 1.0, out=rgb)
    rgb += 1.0
    rgb *= 127.5
    return np.rint(rgb, out=rgb).astype(np.uint8).reshape(height, width, 3)


def encode_image(
    rgb: np.ndarray, mime_type: str = "image/jpeg", approximate: bool = False, decoder: str = ""
) -> pb.Image:
    """Encode an [h, w, 3] uint8 picture as JPEG (previews) or PNG (final images); `decoder` says what drew it."""
    formats = {"image/jpeg": ("JPEG", {"quality": 90}), "image/png": ("PNG", {"compress_level": 1})}
    if mime_type not in formats:
        raise ValueError(f"unsupported image type {mime_type!r}")
    name, options = formats[mime_type]
    buffer = io.BytesIO()
    PILImage.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(buffer, format=name, **options)
    height, width = rgb.shape[:2]
    return pb.Image(
        mime_type=mime_type,
        data=buffer.getvalue(),
        width=width,
        height=height,
        approximate=approximate,
        decoder=decoder,
    )


def decode_image(image: pb.Image) -> np.ndarray:
    """Decode an Image message into an [h, w, 3] uint8 array."""
    with PILImage.open(io.BytesIO(image.data)) as picture:
        return np.asarray(picture.convert("RGB"))


def latent_preview(latent: np.ndarray, preview: PreviewMap = SD1_PREVIEW) -> pb.Image:
    """The JPEG preview of a latent through a model's preview map, labelled as an approximation."""
    return encode_image(latent_to_rgb(latent, preview), "image/jpeg", approximate=True, decoder="linear")
