"""Compiling the UNet by default where it pays: the setting, the buckets, the cache's folder per key, the fallback."""

import dataclasses
import json
import os
from types import SimpleNamespace

import pytest
import torch

from services.inference.diffusion import acceleration
from services.inference.diffusion.acceleration import accelerate, buckets_up_to, compile_buckets, compile_mode
from services.inference.diffusion.compile_cache import (
    MANIFEST,
    cache_folder,
    cache_key,
    compiled_before,
    read_starts,
    record_start,
    use_cache_folder,
)
from services.inference.settings import InferenceSettings


class SmallUNet(torch.nn.Module):
    """A stand-in UNet with the UNet's call: a convolution, the text and the timestep."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 4, 3, padding=1)
        self.text = torch.nn.Linear(8, 4)
        self.config = SimpleNamespace(in_channels=4)

    def forward(self, sample, timestep, encoder_hidden_states, return_dict=False):
        words = self.text(encoder_hidden_states).mean(1)[:, :, None, None]
        return (torch.nn.functional.silu(self.conv(sample) + words + timestep[:, None, None, None] / 1000),)


def small_model(revision: str = "r1") -> SimpleNamespace:
    """What `accelerate` reads of a model: its UNet, device, precision, sizes, name and revision."""
    return SimpleNamespace(
        unet=SmallUNet().eval(),
        device=torch.device("cpu"),
        dtype=torch.float32,
        default_size=64,
        vae_downsample_factor=8,
        latent_channels=4,
        max_length=7,
        text_encoder=SimpleNamespace(config=SimpleNamespace(hidden_size=8)),
        model_id="small",
        revision=revision,
    )


def key(**changes):
    base = {
        "model_name": "stable-diffusion-v1-5/stable-diffusion-v1-5",
        "revision": "451f4fe",
        "device": torch.device("cpu"),
        "dtype": torch.float16,
        "channels_last": False,
        "mode": "default",
        "backend": "inductor",
    }
    return cache_key(**(base | changes))


def test_auto_compiles_on_a_cuda_gpu_and_never_on_a_cpu():
    assert InferenceSettings().unet_compile == "auto"
    assert compile_mode("auto", torch.device("cuda", 0)) == "default"
    assert compile_mode("auto", torch.device("cpu")) == "off"
    assert compile_mode("reduce-overhead", torch.device("cpu")) == "reduce-overhead"  # asked for by name
    assert compile_mode("off", torch.device("cuda")) == "off"


def test_the_buckets_are_the_ones_set_up_to_the_largest_batch():
    assert compile_buckets("", 64) == buckets_up_to(64) == (1, 2, 4, 8, 16, 32, 64)
    assert compile_buckets("8,32,64", 64) == (8, 32, 64)
    assert compile_buckets("32,64,8", 16) == (8, 16)  # the largest batch is always a bucket
    assert compile_buckets("8,32,64", 100) == (8, 32, 64, 100)
    assert InferenceSettings(unet_compile_buckets=" 8, 32 ,64").unet_compile_buckets == "8,32,64"
    with pytest.raises(ValueError, match="batch sizes"):
        InferenceSettings(unet_compile_buckets="8,many")


def test_another_torch_gpu_or_model_compiles_into_another_folder(tmp_path):
    same = cache_folder(tmp_path, key())
    assert cache_folder(tmp_path, key()) == same
    newer_torch = cache_folder(tmp_path, key(torch_version="9.9.9+cu999"))
    new_revision = cache_folder(tmp_path, key(revision="8a1b2c3"))
    other_model = cache_folder(tmp_path, key(model_name="my-school/my-model"))
    other_mode = cache_folder(tmp_path, key(mode="reduce-overhead"))
    other_gpu = cache_folder(tmp_path, dataclasses.replace(key(), device="NVIDIA H200 sm_90"))
    folders = {same, newer_torch, new_revision, other_model, other_mode, other_gpu}
    assert len(folders) == 6 and all(folder.parent == tmp_path for folder in folders)
    assert newer_torch.name.startswith("torch-9.9.9+cu999-")  # readable for whoever clears the disk
    assert "H200" in other_gpu.name


def test_the_cache_folder_is_where_torch_keeps_its_caches_and_remembers_each_start(tmp_path, monkeypatch):
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.delenv("TRITON_CACHE_DIR", raising=False)
    folder = cache_folder(tmp_path, key())
    use_cache_folder(folder, key())
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(folder)
    assert os.environ["TRITON_CACHE_DIR"] == str(folder / "triton")
    assert json.loads((folder / MANIFEST).read_text())["key"]["model"].endswith("@451f4fe")
    assert not compiled_before(folder, (1, 2))
    record_start(folder, {"buckets": [1, 2], "seconds": 60.0})
    record_start(folder, {"buckets": [4], "seconds": 30.0})
    assert compiled_before(folder, (1, 2, 4)) and not compiled_before(folder, (1, 8))
    assert [start["seconds"] for start in read_starts(folder)] == [60.0, 30.0]
    use_cache_folder(folder, key())  # a later start keeps what the folder remembers
    assert len(read_starts(folder)) == 2


def failing_backend(graph, example_inputs):
    raise RuntimeError("no C compiler")


def test_auto_serves_the_unet_uncompiled_when_compiling_fails(tmp_path, monkeypatch):
    monkeypatch.setattr(acceleration, "compile_mode", lambda setting, device: "default")  # as on a GPU
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "triton"))
    model = small_model()
    unet = model.unet
    settings = InferenceSettings(model="tiny", max_batch_size=2, compile_cache_dir=tmp_path)
    report = accelerate(model, settings, backend=failing_backend)
    assert model.unet is unet and report.compile_mode == "off" and report.buckets == ()
    assert "no C compiler" in report.compile_error and "compiling failed" in report.describe()
    torch._dynamo.reset()
    with pytest.raises(Exception, match="no C compiler"):  # a mode asked for by name is a demand
        accelerate(small_model(), settings.model_copy(update={"unet_compile": "default"}), backend=failing_backend)
    torch._dynamo.reset()


def test_a_compile_notes_its_buckets_and_the_caches_counts_in_its_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "triton"))
    model = small_model()
    settings = InferenceSettings(
        model="tiny",
        max_batch_size=2,
        unet_compile="default",
        unet_compile_backend="eager",  # traced as inductor would be, nothing generated
        compile_cache_dir=tmp_path,
    )
    report = accelerate(model, settings)
    torch._dynamo.reset()
    folder = tmp_path / os.path.basename(report.compile_cache)
    assert folder.parent == tmp_path and os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(folder)
    assert report.buckets == (1, 2) and not report.compiled_before
    assert read_starts(folder)[0]["buckets"] == [1, 2] and set(report.cache_counts) >= {"graph_hits", "graph_misses"}
    assert "from a cold cache" in report.describe()
    assert json.loads((folder / MANIFEST).read_text())["key"]["backend"] == "eager"
