"""The streamed generation is diffusers' own computation, step for step."""

import numpy as np
import pytest
import torch
from diffusers.utils.torch_utils import randn_tensor

from services.common.codecs import tensor_from_proto
from services.inference.diffusion.models import device_and_dtype
from services.inference.diffusion.schedulers import make_scheduler
from tests.integration.helpers import ALL_PROBES, collect, request, run_pipeline

CASES = [
    # scheduler, seed, width, height, guidance, steps
    ("ddim", 0, 64, 64, 7.5, 6),
    ("pndm", 1, 128, 96, 3.0, 6),
    ("lms", 2, 64, 128, 7.5, 8),
    ("euler", 3, 96, 96, 12.0, 6),
    ("euler_ancestral", 4, 128, 64, 7.5, 7),
    ("dpm_solver_pp", 5, 80, 112, 5.0, 6),
    ("dpm_solver_pp", 6, 64, 64, 1.5, 10),
]


@pytest.mark.parametrize(("scheduler", "seed", "width", "height", "guidance", "steps"), CASES)
def test_final_image_and_every_latent_equal_the_pipeline(
    stub, pipeline, scheduler_config, scheduler, seed, width, height, guidance, steps
):
    spec = request(
        "a lighthouse at dusk, oil painting",
        negative_prompt="blurry" if seed % 2 else "",
        seed=seed,
        num_inference_steps=steps,
        guidance_scale=guidance,
        width=width,
        height=height,
        scheduler=scheduler,
        include=["latent"],
    )
    stream = collect(stub.Generate(spec))
    image, latents = run_pipeline(pipeline, scheduler_config, spec)

    assert stream.image.shape == (height, width, 3)
    np.testing.assert_array_equal(stream.image, image)
    assert len(stream.frames) == len(latents) == stream.header.total_steps
    for frame, expected in zip(stream.frames, latents, strict=True):
        assert tensor_from_proto(frame.latent).shape == (4, height // 8, width // 8)
        np.testing.assert_array_equal(tensor_from_proto(frame.latent), expected[0].half().numpy())


def test_pndm_streams_every_timestep_it_visits(stub):
    stream = collect(stub.Generate(request(seed=1, num_inference_steps=20, scheduler="pndm", width=64, height=64)))
    assert stream.header.total_steps == 21  # PLMS visits one timestep twice
    assert [f.step_index for f in stream.frames] == list(range(21))
    assert [f.timestep for f in stream.frames] == list(stream.header.timesteps)


def test_header_echoes_the_canonical_request_and_the_starting_noise(stub, scheduler_config):
    stream = collect(stub.Generate(request(seed=42, num_inference_steps=4, width=64, height=64, scheduler="lms")))
    header = stream.header
    assert header.request.seed == 42 and header.request.guidance_scale == pytest.approx(7.5)
    assert header.request.scheduler == "lms" and list(header.request.include.paths)
    assert header.model_id == "tiny" and len(header.model_revision) == 16
    assert len(header.timesteps) == len(header.sigmas) == 4
    assert header.timesteps[0] > header.timesteps[-1]  # from noisy to clean

    # Step 0 is Gaussian noise from the seed, scaled to the scheduler's starting noise level.
    scheduler = make_scheduler("lms", scheduler_config)
    scheduler.set_timesteps(4)
    noise = randn_tensor((1, 4, 8, 8), generator=torch.Generator("cpu").manual_seed(42))  # float32
    device, dtype = device_and_dtype("auto")  # scaled where the model runs, in its precision
    expected = (noise.to(device, dtype) * scheduler.init_noise_sigma)[0].half().cpu().numpy()
    np.testing.assert_array_equal(tensor_from_proto(header.initial_latent), expected)
    assert header.initial_latent_preview.approximate


def test_frames_carry_every_probe_with_consistent_shapes(stub):
    stream = collect(
        stub.Generate(
            request(seed=7, num_inference_steps=3, width=64, height=96, include=ALL_PROBES, scheduler="euler")
        )
    )
    for frame in stream.frames:
        for tensor in (frame.latent, frame.predicted_x0, frame.noise.unconditional, frame.noise.guided):
            assert list(tensor.shape) == [4, 12, 8]
        assert frame.latent_preview.approximate and frame.predicted_x0_preview.approximate
        assert (frame.latent_preview.width, frame.latent_preview.height) == (8, 12)
        assert frame.HasField("sigma") and frame.timings.batch_size == 2
    assert list(stream.header.prompt.embeddings.shape) == [77, 32]
    assert len(stream.header.prompt.token_norms) == 77
    assert stream.final.image.mime_type == "image/png" and not stream.final.image.approximate
    assert stream.final.timings.total_seconds >= stream.final.timings.denoising_seconds > 0


def test_previews_only_sends_no_tensors(stub):
    stream = collect(
        stub.Generate(
            request(seed=7, num_inference_steps=3, width=64, height=64, include=["latent_preview"], scheduler="ddim")
        )
    )
    frame = stream.frames[0]
    assert frame.HasField("latent_preview")
    assert not frame.HasField("latent") and not frame.HasField("predicted_x0") and not frame.HasField("noise")
    assert not stream.header.prompt.HasField("embeddings")
