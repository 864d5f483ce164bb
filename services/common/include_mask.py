"""The include mask's paths: what a generation can expose at each step, declared once for every side.

A request's `include.paths` names some of these, and its stream carries only those.
The service decides what it computes by default (`services/inference/diffusion/probes.py`),
the trajectory's identity takes the on-request ones in (`services/common/trajectories.py`),
and the front end asks for what its pages draw; all of them use these names.
"""

from __future__ import annotations

from enum import StrEnum


class Probe(StrEnum):
    """One path of the include mask (a `str`: it goes into a request as it is)."""

    LATENT = "latent"
    PREDICTED_X0 = "predicted_x0"
    LATENT_PREVIEW = "latent_preview"
    PREDICTED_X0_PREVIEW = "predicted_x0_preview"
    NOISE_PREDICTIONS = "noise_predictions"
    EMBEDDINGS = "embeddings"
    CROSS_ATTENTION = "cross_attention"
    DECODED_X0_PREVIEW = "decoded_x0_preview"


PROBES: dict[str, str] = {
    Probe.LATENT: "the latent after each step, float16 [4, H/8, W/8]",
    Probe.PREDICTED_X0: "the model's guess of the clean latent at each step, float16",
    Probe.LATENT_PREVIEW: "a JPEG of the latent through the linear latent-to-RGB approximation",
    Probe.PREDICTED_X0_PREVIEW: "the same approximation of the predicted clean latent",
    Probe.NOISE_PREDICTIONS: "the unconditional, conditional and guided noise predictions, float16",
    Probe.EMBEDDINGS: "the text embeddings of the prompt and negative prompt in the header, float16",
    Probe.CROSS_ATTENTION: "per-token cross-attention maps of the conditional branch, float16 [tokens, H/8, W/8]",
    Probe.DECODED_X0_PREVIEW: "the predicted clean latent decoded into a picture (the VAE, or TAESD)",
}

# Include paths computed only when a request names them (they cost model work):
# unlike every other path, they change what a trajectory holds, so they are
# part of its identity. A request without them keeps the key it always had.
ON_REQUEST_PROBES: frozenset[str] = frozenset({Probe.CROSS_ATTENTION, Probe.DECODED_X0_PREVIEW})

assert PROBES.keys() == set(Probe), "every path has its meaning"
