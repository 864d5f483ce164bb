"""What the frames show obeys the lesson's arithmetic: guidance and the model's guess of x0."""

import itertools

import numpy as np
import pytest

from services.common.codecs import tensor_from_proto
from services.inference.diffusion.schedulers import make_scheduler
from tests.integration.helpers import ALL_PROBES, collect, request


def f32(tensor):
    return tensor_from_proto(tensor).astype(np.float32)


@pytest.mark.parametrize("guidance", [0.0, 1.0, 4.0, 20.0])
def test_guided_noise_is_u_plus_g_times_c_minus_u(stub, guidance):
    stream = collect(
        stub.Generate(
            request(seed=3, num_inference_steps=3, width=64, height=64, guidance_scale=guidance, include=ALL_PROBES)
        )
    )
    for frame in stream.frames:
        u, c, guided = f32(frame.noise.unconditional), f32(frame.noise.conditional), f32(frame.noise.guided)
        np.testing.assert_allclose(guided, u + guidance * (c - u), rtol=0, atol=2e-2 * (1 + guidance))
        assert not np.array_equal(u, c)  # the two branches read different text


@pytest.mark.parametrize("scheduler", ["ddim", "pndm", "dpm_solver_pp"])
def test_predicted_x0_follows_from_the_noise_prediction(stub, scheduler_config, scheduler):
    """x0 = (x_t - sqrt(1 - abar_t) * eps) / sqrt(abar_t) for the alpha-bar schedulers."""
    stream = collect(
        stub.Generate(
            request(seed=11, num_inference_steps=5, width=64, height=64, scheduler=scheduler, include=ALL_PROBES)
        )
    )
    alphas_cumprod = make_scheduler(scheduler, scheduler_config).alphas_cumprod.numpy()
    x_t = f32(stream.header.initial_latent)
    for frame in stream.frames:
        alpha_bar = alphas_cumprod[int(frame.timestep)]
        expected = (x_t - np.sqrt(1 - alpha_bar) * f32(frame.noise.guided)) / np.sqrt(alpha_bar)
        np.testing.assert_allclose(f32(frame.predicted_x0), expected, rtol=1e-2, atol=5e-2)
        x_t = f32(frame.latent)


@pytest.mark.parametrize("scheduler", ["euler", "lms"])
def test_predicted_x0_in_sigma_form_is_x_minus_sigma_eps(stub, scheduler):
    stream = collect(
        stub.Generate(
            request(seed=12, num_inference_steps=5, width=64, height=64, scheduler=scheduler, include=ALL_PROBES)
        )
    )
    x = f32(stream.header.initial_latent)
    for frame in stream.frames:
        expected = x - frame.sigma * f32(frame.noise.guided)
        np.testing.assert_allclose(f32(frame.predicted_x0), expected, rtol=1e-2, atol=5e-2)
        x = f32(frame.latent)


def test_the_guess_of_x0_settles_as_the_noise_goes(stub):
    """Late guesses change less than early ones: layout first, details last."""
    stream = collect(
        stub.Generate(
            request(seed=5, num_inference_steps=20, width=64, height=64, scheduler="ddim", include=ALL_PROBES)
        )
    )
    guesses = [f32(frame.predicted_x0) for frame in stream.frames]
    changes = [np.abs(b - a).mean() for a, b in itertools.pairwise(guesses)]
    assert np.mean(changes[-5:]) < np.mean(changes[:5])
    # The last latent is the last guess: nothing is left to remove.
    np.testing.assert_allclose(f32(stream.frames[-1].latent), guesses[-1], rtol=1e-2, atol=5e-2)
