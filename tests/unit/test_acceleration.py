"""The speed options: batch buckets, the padded UNet, and what start-up decides on a CPU."""

import torch

from services.inference.diffusion.acceleration import (
    BucketedUNet,
    accelerate,
    batch_that_fits,
    bucket_for,
    buckets_up_to,
    compile_unet,
)
from services.inference.diffusion.models import DiffusionModel
from services.inference.settings import InferenceSettings


def test_buckets_double_up_to_the_largest_batch():
    assert buckets_up_to(1) == (1,)
    assert buckets_up_to(8) == (1, 2, 4, 8)
    assert buckets_up_to(24) == (1, 2, 4, 8, 16, 24)
    assert [bucket_for(n, (1, 2, 4, 8)) for n in (1, 2, 3, 5, 8, 9)] == [1, 2, 4, 8, 8, 9]


def test_the_batch_that_fits_is_a_power_of_two_within_the_cap():
    gib = 2**30
    assert batch_that_fits(10 * gib, gib) == 8  # 10 fit; 8 is the power of two below
    assert batch_that_fits(100 * gib, gib // 4) == 64  # 400 would fit: the cap
    assert batch_that_fits(100 * gib, gib // 4, cap=48) == 32
    assert batch_that_fits(-gib, gib) == 1  # nothing fits: one at a time, as before batching


def tiny_model(tiny_dir, **settings) -> tuple[DiffusionModel, InferenceSettings]:
    config = InferenceSettings(model="tiny", tiny_dir=tiny_dir, device="cpu", **settings)
    return DiffusionModel.load(config), config


def unet_inputs(model: DiffusionModel, generations: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(generations)
    rows = 2 * generations
    sample = torch.randn((rows, 4, 8, 8), generator=generator)
    timesteps = torch.linspace(900, 100, rows)
    text = torch.randn((rows, model.max_length, model.text_encoder.config.hidden_size), generator=generator)
    return sample, timesteps, text


def test_a_padded_batch_gives_each_sample_what_the_unet_gives_it(tiny_dir):
    model, _ = tiny_model(tiny_dir)
    sample, timesteps, text = unet_inputs(model, 3)
    with torch.inference_mode():
        plain = model.unet(sample, timesteps, encoder_hidden_states=text, return_dict=False)[0]
        padded = BucketedUNet(model.unet, model.unet, (1, 2, 4), cuda_graphs=False)
        ours = padded(sample, timesteps, encoder_hidden_states=text)[0]
    assert ours.shape == plain.shape  # three generations ran as four, the fourth cut off
    torch.testing.assert_close(ours, plain, rtol=1e-4, atol=1e-5)
    assert padded.config is model.unet.config  # the rest of the service still reads the UNet's config


def test_on_a_cpu_nothing_changes_by_default(tiny_dir):
    model, settings = tiny_model(tiny_dir)
    unet = model.unet
    report = accelerate(model, settings)
    assert model.unet is unet and not report.channels_last and report.compile_mode == "off"
    assert (report.max_batch_size, report.max_batch_source) == (4, "cpu default")
    assert "AttnProcessor2_0" in report.attention
    _, fixed = tiny_model(tiny_dir, max_batch_size=12)
    assert accelerate(model, fixed).max_batch_size == 12


def test_a_compiled_unet_computes_what_the_unet_computes(tiny_dir):
    model, _ = tiny_model(tiny_dir)
    sample, timesteps, text = unet_inputs(model, 2)
    with torch.inference_mode():
        plain = model.unet(sample, timesteps, encoder_hidden_states=text, return_dict=False)[0]
    model.unet.to(memory_format=torch.channels_last)
    # The eager backend traces as inductor would, without a C++ compiler's minutes.
    compiled, seconds = compile_unet(model, "default", (2,), backend="eager")
    with torch.inference_mode():
        ours = compiled(sample[:2], timesteps[:2], encoder_hidden_states=text[:2])[0]
    assert seconds > 0
    torch.testing.assert_close(ours, plain[:2], rtol=1e-4, atol=1e-5)
