"""The include mask's paths are declared once (services/common/include_mask.py), and every side uses that one."""

from frontend.stream import load
from services.common import include_mask, trajectories
from services.common.api import pb
from services.common.include_mask import ON_REQUEST_PROBES, Probe
from services.inference.diffusion import probes
from services.inference.trajectories.frames import _FRAME_FIELDS


def test_the_service_and_the_trajectory_key_use_the_one_declaration():
    assert probes.PROBES is include_mask.PROBES
    assert trajectories.ON_REQUEST_PROBES is include_mask.ON_REQUEST_PROBES
    assert set(Probe) == probes.ALWAYS_COMPUTED | ON_REQUEST_PROBES


def test_every_probe_but_the_headers_embeddings_fills_a_field_of_each_step():
    assert set(_FRAME_FIELDS) == set(Probe) - {Probe.EMBEDDINGS}
    assert all(name in pb.StepFrame.DESCRIPTOR.fields_by_name for name in _FRAME_FIELDS.values())
    assert "embeddings" in pb.PromptEncoding.DESCRIPTOR.fields_by_name


def test_a_lesson_asks_for_the_same_paths_in_the_same_order_as_before(monkeypatch):
    """The request's bytes are the front end's key for a lesson's trajectory: named, they must not change."""
    monkeypatch.setattr(load, "server_defaults", lambda client=None: frozenset({"decoded_x0_preview"}))
    request = pb.GenerateRequest(prompt="a red circle on the left", seed=3)
    request.include.paths.extend(["cross_attention", "embeddings"])  # a catalog entry's costly probe is kept
    sent = load.request_with(request)
    assert list(sent.include.paths) == [
        "latent", "predicted_x0", "latent_preview", "predicted_x0_preview", "noise_predictions",
        "cross_attention", "decoded_x0_preview",
    ]  # fmt: skip
    assert all(type(path) is str for path in sent.include.paths)
    assert list(load.request_with(request, [Probe.LATENT_PREVIEW]).include.paths) == [
        "latent_preview", "cross_attention", "decoded_x0_preview",
    ]  # fmt: skip
