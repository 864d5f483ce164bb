"""Real pictures at every step: the guess of x0 decoded (the VAE, or TAESD), labelled as a decode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoencoderTiny

from services.common.api import pb
from services.common.codecs import decode_image, tensor_from_proto
from services.inference.diffusion.previews import to_pixels
from tests.integration.helpers import collect, request
from tests.support.servers import running_server, stub_for

DECODED = ["predicted_x0_preview", "decoded_x0_preview"]


@pytest.fixture(scope="module")
def taesd_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TAESD-shaped tiny autoencoder with random weights (the real ones are a download)."""
    folder = tmp_path_factory.mktemp("taesd")
    AutoencoderTiny().save_pretrained(folder)
    return folder


def test_shapes_decodes_every_step_with_its_own_vae(shapes_stub):
    spec = request("a large blue square in the center", seed=4, num_inference_steps=20, width=64, height=64)
    spec.include.paths.extend(DECODED)
    stream = collect(shapes_stub.Generate(spec))
    for frame in stream.frames:
        decoded = frame.decoded_x0_preview
        assert (decoded.decoder, decoded.approximate, decoded.mime_type) == ("vae", False, "image/png")
        assert (decoded.width, decoded.height) == (64, 64)
        assert (frame.predicted_x0_preview.decoder, frame.predicted_x0_preview.approximate) == ("linear", True)
        assert frame.timings.decode_seconds > 0
    # The last guess is the last latent: its decode is the final image.
    last = decode_image(stream.frames[-1].decoded_x0_preview).astype(int)
    assert np.abs(last - stream.image.astype(int)).max() <= 2
    assert stream.final.image.decoder == "vae"


def test_shapes_decodes_by_default_and_not_when_the_mask_leaves_it_out(shapes_stub):
    # Shapes has a real decoder, so an empty mask gets the decoded guess (probes.default_probes)...
    info = shapes_stub.GetModelInfo(pb.GetModelInfoRequest())
    assert "decoded_x0_preview" in info.default_include_paths
    by_default = collect(shapes_stub.Generate(request("a red circle on the left", seed=5, num_inference_steps=5,
                                                       width=64, height=64)))  # fmt: skip
    assert all(frame.decoded_x0_preview.decoder == "vae" for frame in by_default.frames)
    # ...and a mask that names other paths only gets no decode, and costs none.
    spec = request("a red circle on the left", seed=6, num_inference_steps=5, width=64, height=64)
    spec.include.paths.append("latent_preview")
    stream = collect(shapes_stub.Generate(spec))
    assert not any(frame.HasField("decoded_x0_preview") for frame in stream.frames)
    assert all(frame.timings.decode_seconds == 0 for frame in stream.frames)


@pytest.mark.parametrize(("setting", "decoder", "approximate"), [("taesd", "taesd", False), ("off", "linear", True)])
def test_stable_diffusion_shaped_models_use_taesd_or_the_linear_map(settings, taesd_dir, setting, decoder, approximate):
    config = settings.model_copy(update={"redis_url": "", "preview_decoder": setting, "taesd_model": str(taesd_dir)})
    with running_server(config) as server:
        channel, stub = stub_for(server.address)
        spec = request("a red barn", seed=6, num_inference_steps=3, width=96, height=64)
        spec.include.paths.extend([*DECODED, "predicted_x0"])
        stream = collect(stub.Generate(spec))
        # TAESD is one setting away: with it, every step's guess is decoded by default; without, the linear map.
        defaults = stub.GetModelInfo(pb.GetModelInfoRequest()).default_include_paths
        assert ("decoded_x0_preview" in defaults) == (setting == "taesd")
        channel.close()
    for frame in stream.frames:
        decoded = frame.decoded_x0_preview
        assert (decoded.decoder, decoded.approximate) == (decoder, approximate)
        size = (96, 64) if setting == "taesd" else (12, 8)  # a decode is full size; the linear map latent size
        assert (decoded.width, decoded.height) == size == decode_image(decoded).shape[1::-1]
    if setting == "taesd":  # TAESD's own decode of the guess (sent in float16, hence the tolerance)
        taesd = AutoencoderTiny.from_pretrained(taesd_dir)
        x0 = torch.from_numpy(tensor_from_proto(stream.frames[-1].predicted_x0).astype(np.float32))[None]
        with torch.inference_mode():
            expected = to_pixels(taesd.decode(x0, return_dict=False)[0]).numpy().astype(int)
        assert expected.std() > 1  # a picture, not a flat colour
        assert np.abs(decode_image(stream.frames[-1].decoded_x0_preview).astype(int) - expected).max() <= 3
