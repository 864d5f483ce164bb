"""What a generation can expose at each step, declared as data.

A request's include mask names some of these, and its stream carries only
those. The runner computes and copies every probe off the device at every step
all the same: a trajectory is shared by every reader of the same request (single
flight, the cache), each with its own mask, so what one reader skips another may
want. The cost is five float16 tensors of the latent's size per step (160 KB at
512 px), against a UNet step of about 0.8 TFLOP per sample: under 0.1% of a
step by the copy engine's bandwidth (an estimate; the GPU suite measures it).
"""

from __future__ import annotations

PROBES: dict[str, str] = {
    "latent": "the latent after each step, float16 [4, H/8, W/8]",
    "predicted_x0": "the model's guess of the clean latent at each step, float16",
    "latent_preview": "a JPEG of the latent through the linear latent-to-RGB approximation",
    "predicted_x0_preview": "the same approximation of the predicted clean latent",
    "noise_predictions": "the unconditional, conditional and guided noise predictions, float16",
    "embeddings": "the text embeddings of the prompt and negative prompt in the header, float16",
}

DEFAULT_PROBES: frozenset[str] = frozenset(PROBES) - {"noise_predictions"}
