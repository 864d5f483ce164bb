"""What a generation can expose at each step, declared as data.

A request's include mask names some of these; the runner copies only what was
asked for off the device, so a thin client that wants previews pays for
previews alone.
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
