"""The player's pictures as data URLs: exact while small, encoded once a content for the whole process."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

import frontend.drawing.views as views
from frontend.drawing.views import _Encoded


def picture(seed: int, size: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def decoded(url: str) -> np.ndarray:
    header, payload = url.split(",", 1)
    assert header in ("data:image/png;base64", "data:image/jpeg;base64")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(payload))).convert("RGB"))


@pytest.fixture
def encodings(monkeypatch) -> list[tuple[int, ...]]:
    """The shapes of the pictures really encoded (the rest came from memory)."""
    seen: list[tuple[int, ...]] = []
    encode = views._encode

    def counting(array: np.ndarray) -> str:
        seen.append(array.shape)
        return encode(array)

    monkeypatch.setattr(views, "_encode", counting)
    return seen


def test_a_small_picture_comes_back_exactly_and_a_large_one_as_jpeg():
    small, large = picture(1), picture(2, size=256)
    assert np.array_equal(decoded(_Encoded().get(small)), small)
    url = _Encoded().get(large)
    assert url.startswith("data:image/jpeg") and decoded(url).shape == large.shape


def test_the_same_picture_is_encoded_once_whoever_asks(encodings):
    urls = _Encoded()
    first = urls.get(picture(1))
    again = [urls.get(picture(1)) for _ in range(30)]  # a class of 30 opening the same lesson: new arrays each time
    assert again == [first] * 30
    assert len(encodings) == 1


def test_pictures_that_differ_by_one_value_or_only_by_shape_are_told_apart(encodings):
    urls = _Encoded()
    one = picture(1)
    other = one.copy()
    other[10, 10, 1] ^= 1
    flat = one.reshape(64, 192)  # the same bytes as a grey picture
    assert len({urls.get(one), urls.get(other), urls.get(flat)}) == 3
    assert np.array_equal(decoded(urls.get(other)), other)
    assert len(encodings) == 3


def test_it_keeps_the_newest_within_its_budget(encodings):
    one_url = len(_Encoded().get(picture(0)))
    urls = _Encoded(keep_bytes=int(2.5 * one_url))
    urls.get(picture(1))
    urls.get(picture(2))
    urls.get(picture(1))  # used again: now the newest
    urls.get(picture(3))  # over budget: the oldest (2) goes
    encodings.clear()
    urls.get(picture(1))
    urls.get(picture(3))
    assert encodings == []
    urls.get(picture(2))
    assert len(encodings) == 1
