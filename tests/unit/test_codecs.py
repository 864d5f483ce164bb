"""Tensor and image codecs, and the latent-to-RGB preview map."""

import numpy as np
import pytest

from services.common.api import pb
from services.common.codecs import (
    LATENT_RGB_FACTORS,
    PreviewMap,
    decode_image,
    encode_image,
    latent_preview,
    latent_to_rgb,
    tensor_from_proto,
    tensor_to_proto,
)


def test_float16_tensor_round_trip_keeps_shape_and_values():
    array = np.random.default_rng(0).standard_normal((4, 12, 16)).astype(np.float32)
    message = tensor_to_proto(array)
    assert message.dtype == pb.D_TYPE_FLOAT16
    assert list(message.shape) == [4, 12, 16]
    assert len(message.data) == array.size * 2
    np.testing.assert_array_equal(tensor_from_proto(message), array.astype(np.float16))


def test_float32_tensor_is_little_endian_bytes():
    message = tensor_to_proto(np.array([1.0, -2.5], dtype=np.float32), dtype="<f4")
    assert message.data == np.array([1.0, -2.5], dtype="<f4").tobytes()
    np.testing.assert_array_equal(tensor_from_proto(message), [1.0, -2.5])


def test_unknown_dtype_is_refused():
    with pytest.raises(ValueError, match="dtype"):
        tensor_from_proto(pb.Tensor(dtype=pb.D_TYPE_UNSPECIFIED, shape=[1], data=b"\0\0"))


def test_latent_to_rgb_applies_the_published_factors():
    latent = np.zeros((4, 2, 3), dtype=np.float32)
    latent[0, 0, 0] = 1.0  # channel 0 alone gives its row of factors
    latent[3, 1, 2] = 10.0  # far out of range: clamped to -1 / +1
    rgb = latent_to_rgb(latent)
    assert rgb.shape == (2, 3, 3) and rgb.dtype == np.uint8
    expected = np.round((LATENT_RGB_FACTORS[0] + 1) * 127.5)
    np.testing.assert_array_equal(rgb[0, 0], expected)
    assert rgb[0, 1].tolist() == [128, 128, 128]  # a zero latent is mid-grey
    assert rgb[1, 2].tolist() == [0, 0, 0]  # channel 3 has only negative factors


def test_latent_to_rgb_is_the_linear_map_clipped_and_rounded():
    latents = (np.random.default_rng(2).standard_normal((3, 4, 16, 24)) * 2).astype(np.float16)
    for latent in latents:
        exact = np.einsum("chw,cr->hwr", latent.astype(np.float64), LATENT_RGB_FACTORS.astype(np.float64))
        expected = np.round((np.clip(exact, -1, 1) + 1) * 127.5)
        rgb = latent_to_rgb(latent).astype(np.float64)
        assert rgb.shape == (16, 24, 3)
        assert np.abs(rgb - expected).max() <= 1  # float32 rounding may land a half-way value on its neighbour
        assert (rgb == expected).mean() > 0.99


def test_latent_to_rgb_rejects_other_shapes():
    with pytest.raises(ValueError, match=r"\[4, h, w\]"):
        latent_to_rgb(np.zeros((3, 8, 8)))


def test_png_is_lossless_and_jpeg_preview_is_labelled():
    rgb = np.random.default_rng(1).integers(0, 256, size=(16, 24, 3), dtype=np.uint8)
    png = encode_image(rgb, "image/png")
    assert (png.width, png.height, png.approximate) == (24, 16, False)
    np.testing.assert_array_equal(decode_image(png), rgb)
    preview = latent_preview(np.zeros((4, 8, 8), dtype=np.float16))
    assert preview.mime_type == "image/jpeg" and preview.approximate
    assert preview.data[:2] == b"\xff\xd8"  # JPEG start-of-image marker


def test_a_models_own_preview_map_adds_its_bias():
    factors = [[0.5, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 0.5], [0.0, 0.0, 0.0]]
    preview = PreviewMap.from_lists(factors, [0.9, 0, -0.9])
    rgb = latent_to_rgb(np.zeros((4, 1, 1), dtype=np.float32), preview)
    assert rgb[0, 0].tolist() == [242, 128, 13]  # the bias alone: (0.9, 0, -0.9) mapped to 0..255
    latent = np.zeros((4, 1, 1), dtype=np.float32)
    latent[1] = 1.0
    assert latent_to_rgb(latent, preview)[0, 0].tolist() == [242, 191, 13]  # + 0.5 on green


def test_a_preview_map_of_the_wrong_shape_is_refused():
    with pytest.raises(ValueError, match="preview factors"):
        PreviewMap.from_lists([[1.0, 0.0]], [0.0, 0.0, 0.0])
