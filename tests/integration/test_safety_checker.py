"""The Stable Diffusion safety checker on final images, with tiny checkers whose answer is known."""

import numpy as np
import pytest

from services.common.api import pb
from services.common.codecs import decode_image
from services.inference.trajectories.frames import blur
from tests.integration.helpers import collect, request
from tests.support.safety import with_safety_checker
from tests.support.servers import running_server, stub_for

SPEC = request("a harbour at night", seed=9, num_inference_steps=3, width=64, height=64)


@pytest.fixture(scope="module")
def checked_models(tiny_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("checked")
    return (with_safety_checker(tiny_dir, folder / "flags-everything", flag_everything=True),
            with_safety_checker(tiny_dir, folder / "flags-nothing", flag_everything=False))  # fmt: skip


def detail(image: np.ndarray) -> float:
    """How much neighbouring pixels differ, on average: high for a sharp picture, low for a blurred one."""
    return float(np.abs(np.diff(image.astype(int), axis=1)).mean())


def generate_twice(settings, **update):
    with running_server(settings.model_copy(update=update)) as server:
        channel, stub = stub_for(server.address)
        first, second = collect(stub.Generate(SPEC)), collect(stub.Generate(SPEC))
        channel.close()
    return first, second


def test_a_flagged_image_is_blurred_and_never_replayed(settings, tiny_dir, checked_models):
    flags_everything, flags_nothing = checked_models
    plain, _ = generate_twice(settings, model=str(tiny_dir), redis_url="")
    flagged, again = generate_twice(settings, model=str(flags_everything))
    passed, cached = generate_twice(settings, model=str(flags_nothing))

    image = decode_image(plain.final.image)
    assert flagged.final.safety_flagged and again.final.safety_flagged
    assert np.array_equal(decode_image(flagged.final.image), blur(image))  # the real picture, blurred
    assert (
        np.abs(np.diff(blur(image).astype(int), axis=1)).mean()
        < 0.3 * np.abs(np.diff(image.astype(int), axis=1)).mean()
    )
    assert again.status.source == pb.TRAJECTORY_SOURCE_COMPUTED  # not cached: checked anew every time

    assert not passed.final.safety_flagged and np.array_equal(decode_image(passed.final.image), image)
    assert cached.status.source == pb.TRAJECTORY_SOURCE_CACHE  # unflagged results are cached as usual


def test_the_checker_can_be_turned_off(settings, checked_models):
    flags_everything, _ = checked_models
    result, _ = generate_twice(settings, model=str(flags_everything), safety_checker="off", redis_url="")
    assert not result.final.safety_flagged
