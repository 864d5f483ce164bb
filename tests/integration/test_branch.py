"""Branch at step k (lesson 8): the first k steps are the plain run's, then the changed prompt takes over."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from services.common.api import pb
from services.common.codecs import decode_image, tensor_from_proto
from services.common.shapes_judge import judge
from tests.integration.helpers import collect, request


def branched(base: pb.GenerateRequest, at_step: int, **changes) -> pb.GenerateRequest:
    message = pb.GenerateRequest()
    message.CopyFrom(base)
    message.branch.at_step = at_step
    for name, value in changes.items():
        setattr(message.branch, name, value)
    return message


def latents(stream) -> list[np.ndarray]:
    return [tensor_from_proto(frame.latent) for frame in stream.frames]


def tiny_request(prompt: str) -> pb.GenerateRequest:
    message = request(
        prompt, seed=7, num_inference_steps=8, guidance_scale=7.5, width=64, height=64, scheduler="dpm_solver_pp"
    )  # fmt: skip (a multistep scheduler: its history must carry over)
    message.include.paths.extend(["latent"])
    return message


def test_the_first_k_frames_are_the_plain_runs_and_the_rest_differ(stub):
    plain = collect(stub.Generate(tiny_request("a lighthouse at dusk")))
    branch = collect(stub.Generate(branched(tiny_request("a lighthouse at dusk"), 3, prompt="a castle at noon")))
    assert branch.status.trajectory_key != plain.status.trajectory_key  # its own trajectory
    assert branch.header.request.branch.prompt == "a castle at noon" and branch.header.request.branch.at_step == 3
    before, after = latents(plain), latents(branch)
    assert len(before) == len(after) == 8
    for k in range(3):
        assert np.array_equal(before[k], after[k])  # bit for bit
    assert all(not np.array_equal(before[k], after[k]) for k in range(3, 8))


def test_a_branch_at_step_0_is_a_plain_run_of_the_new_prompt(stub):
    new = collect(stub.Generate(tiny_request("a castle at noon")))
    branch = collect(stub.Generate(branched(tiny_request("a lighthouse at dusk"), 0, prompt="a castle at noon")))
    assert all(np.array_equal(a, b) for a, b in zip(latents(new), latents(branch), strict=True))
    assert np.array_equal(decode_image(new.final.image), decode_image(branch.final.image))


def test_a_branch_may_change_the_guidance_alone(stub):
    plain = collect(stub.Generate(tiny_request("a lighthouse at dusk")))
    branch = collect(stub.Generate(branched(tiny_request("a lighthouse at dusk"), 4, guidance_scale=0.0)))
    assert branch.header.request.branch.prompt == "a lighthouse at dusk"  # unchanged texts filled in
    assert np.array_equal(latents(plain)[3], latents(branch)[3])
    assert not np.array_equal(latents(plain)[4], latents(branch)[4])


@pytest.mark.parametrize(
    ("at_step", "prompt", "sentence"),
    [(9, "a castle", "from 0 to 8"), (2, "   ", "it is empty"), (2, "a cat\u202e", "invisible or control")],
)
def test_a_branch_outside_the_rules_gets_a_sentence(stub, at_step, prompt, sentence):
    with pytest.raises(grpc.RpcError) as caught:
        collect(stub.Generate(branched(tiny_request("a lighthouse"), at_step, prompt=prompt)))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and sentence in caught.value.details()


# -- on the Shapes model: what a student sees ---------------------------------

RED_LEFT, BLUE_RIGHT = "a red circle on the left", "a blue square on the right"


def shapes_request(prompt: str) -> pb.GenerateRequest:
    # Lesson 8's settings: DDIM, whose last step moves the picture least (docs/api.md has the figures).
    return request(prompt, seed=3, num_inference_steps=50, guidance_scale=7.5, scheduler="ddim")


def test_on_shapes_switching_at_step_0_changes_the_picture_and_at_the_last_step_barely(shapes_stub):
    original = decode_image(collect(shapes_stub.Generate(shapes_request(RED_LEFT))).final.image)
    seen = judge(original)
    assert (seen.colour, seen.shape, seen.position) == ("red", "circle", "on the left")
    early = decode_image(collect(shapes_stub.Generate(branched(shapes_request(RED_LEFT), 0, prompt=BLUE_RIGHT)))
                         .final.image)  # fmt: skip
    assert judge(early).colour == "blue" and judge(early).position == "on the right"
    late = decode_image(collect(shapes_stub.Generate(branched(shapes_request(RED_LEFT), 49, prompt=BLUE_RIGHT)))
                        .final.image)  # fmt: skip
    # The last of 50 steps can no longer change what the picture shows: the same red circle on the left,
    # on average within 2 levels a pixel (the shape's edge moves a little).
    assert (judge(late).colour, judge(late).shape, judge(late).position) == ("red", "circle", "on the left")
    difference = np.abs(late.astype(int) - original.astype(int))
    assert difference.mean() <= 2.0, f"the last step alone moved pixels by {difference.mean():.2f} levels on average"
