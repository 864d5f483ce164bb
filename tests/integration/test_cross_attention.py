"""The cross-attention probe: per-token maps beside the attention, never instead of it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from services.common.api import STUDENT_METADATA, pb
from services.common.codecs import tensor_from_proto
from tests.integration.helpers import collect, request, run_pipeline
from tests.integration.test_batching import run_together
from tests.support.servers import running_server, stub_for

WITH_MAPS = ["latent", "cross_attention"]


def kept_tokens(header: pb.TrajectoryHeader) -> list[pb.Token]:
    """Start, the prompt's pieces and the end token: what the maps keep (padding dropped)."""
    return [t for t in header.prompt.tokens.tokens if t.kind != pb.TOKEN_KIND_PADDING]


def maps_of(frame: pb.StepFrame) -> np.ndarray:
    return tensor_from_proto(frame.cross_attention.maps).astype(np.float32)


def test_maps_are_float16_one_grid_per_kept_token(stub):
    spec = request("a red barn in a field", seed=21, num_inference_steps=4, width=96, height=64, include=WITH_MAPS)
    stream = collect(stub.Generate(spec))
    tokens = kept_tokens(stream.header)
    assert [t.kind for t in (tokens[0], tokens[-1])] == [pb.TOKEN_KIND_START, pb.TOKEN_KIND_END]
    assert len(tokens) == 8  # start, a, red, barn, in, a, field, end
    for frame in stream.frames:
        attention = frame.cross_attention
        assert attention.maps.dtype == pb.D_TYPE_FLOAT16
        assert list(attention.maps.shape) == [len(tokens), 64 // 8, 96 // 8]
        maps = maps_of(frame)
        # Probabilities over the 77 positions: the kept ones hold part of each position's mass.
        assert maps.min() >= 0 and maps.sum(axis=0).max() <= 1.0 + 1e-2
        # The tiny model attends at one resolution (its lower block): 4 x 6 for a 8 x 12 latent.
        assert [(r.height, r.width) for r in attention.resolutions] == [(4, 6)]
        for resolution in attention.resolutions:
            assert resolution.layers > 0 and resolution.maps.dtype == pb.D_TYPE_FLOAT16
            assert list(resolution.maps.shape) == [len(tokens), resolution.height, resolution.width]


def test_maps_are_the_layer_average_resized_to_the_latent_grid(stub):
    """DAAM's aggregation: each resolution's average, resized to the latent, weighted by its layers."""
    spec = request("a lighthouse at dusk", seed=22, num_inference_steps=3, width=64, height=64, include=WITH_MAPS)
    for frame in collect(stub.Generate(spec)).frames:
        total, layers = 0.0, 0
        for r in frame.cross_attention.resolutions:
            grid = torch.from_numpy(tensor_from_proto(r.maps).astype(np.float32))[None]
            resized = F.interpolate(grid, size=(8, 8), mode="bilinear", align_corners=False)[0].numpy()
            total, layers = total + r.layers * resized, layers + r.layers
        np.testing.assert_allclose(maps_of(frame), total / layers, atol=2e-3)


def test_a_trajectory_without_maps_never_serves_a_request_for_them(stub):
    kite = {"seed": 23, "num_inference_steps": 3, "width": 64, "height": 64}
    plain = request("a paper kite over a hill", include=["latent"], **kite)
    with_maps = request("a paper kite over a hill", include=WITH_MAPS, **kite)
    first = collect(stub.Generate(plain))
    assert not any(frame.HasField("cross_attention") for frame in first.frames)
    assert collect(stub.Generate(plain)).status.source == pb.TRAJECTORY_SOURCE_CACHE

    computed = collect(stub.Generate(with_maps))
    assert computed.status.source == pb.TRAJECTORY_SOURCE_COMPUTED
    assert computed.status.trajectory_key != first.status.trajectory_key
    assert all(frame.HasField("cross_attention") for frame in computed.frames)
    # The probe changes nothing else: the same latents and image, bit for bit.
    np.testing.assert_array_equal(computed.image, first.image)
    for a, b in zip(first.frames, computed.frames, strict=True):
        assert a.latent.data == b.latent.data

    cached = collect(stub.Generate(with_maps))
    assert cached.status.source == pb.TRAJECTORY_SOURCE_CACHE
    assert [f.cross_attention for f in cached.frames] == [f.cross_attention for f in computed.frames]
    # Each reader receives only what its own mask names.
    maps_only = request("a paper kite over a hill", include=["cross_attention"], **kite)
    frame = collect(stub.Generate(maps_only)).frames[0]
    assert frame.HasField("cross_attention") and not frame.HasField("latent")


@pytest.mark.parametrize(("scheduler", "seed", "width", "height", "guidance"), [
    ("dpm_solver_pp", 31, 64, 64, 7.5),
    ("euler_ancestral", 32, 96, 64, 4.0),
    ("pndm", 33, 64, 80, 12.0),
])  # fmt: skip
def test_with_the_probe_on_the_stream_still_equals_the_pipeline(
    stub, pipeline, scheduler_config, scheduler, seed, width, height, guidance
):
    spec = request(
        "a watercolor fox in the snow",
        seed=seed,
        num_inference_steps=5,
        guidance_scale=guidance,
        width=width,
        height=height,
        scheduler=scheduler,
        include=["latent", "cross_attention", "decoded_x0_preview"],
    )
    stream = collect(stub.Generate(spec))
    assert all(frame.HasField("cross_attention") for frame in stream.frames)
    image, latents = run_pipeline(pipeline, scheduler_config, spec)
    np.testing.assert_array_equal(stream.image, image)
    for frame, expected in zip(stream.frames, latents, strict=True):
        np.testing.assert_array_equal(tensor_from_proto(frame.latent), expected[0].half().numpy())


@pytest.fixture(scope="module")
def uncached(settings):
    """A server that computes every request (no cache, no single flight), four generations per UNet call."""
    config = settings.model_copy(update={"redis_url": "", "single_flight": False, "max_batch_size": 4})
    with running_server(config) as server:
        channel, stub = stub_for(server.address)
        yield stub
        channel.close()


def test_batched_maps_are_each_samples_own(uncached):
    """Different prompts in one UNet call: each gets the maps it gets alone (within float16's rounding)."""
    prompts = ["a red barn in a field", "a tiny boat", "an owl reading a very large book by candlelight"]
    messages = [
        request(p, seed=40 + i, num_inference_steps=4, width=64, height=64, include=WITH_MAPS)
        for i, p in enumerate(prompts)
    ]
    alone = [collect(uncached.Generate(m, metadata=((STUDENT_METADATA, "solo"),))) for m in messages]
    together = run_together(uncached, messages, ["ann", "bob", "cy"])
    assert max(f.timings.batch_size for s in together for f in s.frames) > 2
    for one, shared in zip(alone, together, strict=True):
        assert len(kept_tokens(one.header)) == maps_of(one.frames[0]).shape[0]
        for a, b in zip(one.frames, shared.frames, strict=True):
            assert a.cross_attention.maps.shape == b.cross_attention.maps.shape
            np.testing.assert_allclose(maps_of(b), maps_of(a), atol=2e-3)


def test_model_info_offers_the_costly_probes_but_not_by_default(stub):
    info = stub.GetModelInfo(pb.GetModelInfoRequest())
    assert {"cross_attention", "decoded_x0_preview"} <= set(info.include_paths)
    assert "cross_attention" not in info.default_include_paths
    # The decoded guess is a default only where the server has a cheap real decoder (the tiny model's small VAE).
    assert "decoded_x0_preview" in info.default_include_paths
