"""What a generation computes of the probes (declared in `services/common/include_mask.py`), and by default.

A request's include mask names some of them, and its stream carries only
those. Most probes are cheap, and the runner computes and copies them off the
device at every step whatever the request asked for: a trajectory is shared by
every reader of the same request (single flight, the cache), each with its own
mask, so what one reader skips another may want. The cost is five float16
tensors of the latent's size per step (160 KB at 512 px). Measured on an H100
(the GPU suite, docs/benchmarks.md): copying them takes 1.4% of the UNet step's
time for one student and 3.8% for 32, and the copies run beside the next step,
which the worker queues before it waits for them.

Two probes cost real model work, so they are computed only when a request
names them (`ON_REQUEST_PROBES`): the cross-attention maps (a softmax over the
77 text positions for every pixel of every cross-attention layer) and a decode
of the predicted x0 at every step. They are part of a trajectory's identity
(see `services/common/trajectories.py` and docs/api.md): a trajectory computed
without them never serves a request that wants them.
"""

from __future__ import annotations

from services.common.include_mask import ON_REQUEST_PROBES, PROBES, Probe

__all__ = ["ALWAYS_COMPUTED", "DEFAULT_PROBES", "PROBES", "computed_probes", "default_probes"]

DEFAULT_PROBES: frozenset[str] = frozenset(PROBES) - {Probe.NOISE_PREDICTIONS} - ON_REQUEST_PROBES
# Computed for every generation, whatever its readers ask for.
ALWAYS_COMPUTED: frozenset[str] = frozenset(PROBES) - ON_REQUEST_PROBES


def computed_probes(include: frozenset[str]) -> frozenset[str]:
    """What a generation computes for a request with this mask: every cheap probe, and the costly ones it names."""
    return ALWAYS_COMPUTED | (include & ON_REQUEST_PROBES)


def default_probes(decodes_pictures: bool) -> frozenset[str]:
    """What a request that names no probes gets, and what every lesson example carries, on this server.

    The rule, declared once: where the server has a real decoder for the per-step
    pictures (`previews.PreviewDecoder`: the model's own VAE when it is small, as
    Shapes' is, or TAESD where set up), each step's guess is decoded by default, so
    every player shows a picture, not a grid of latent cells. Where it has none (SD
    1.5 out of the box), the cheap linear preview stays the default.
    """
    return DEFAULT_PROBES | {Probe.DECODED_X0_PREVIEW} if decodes_pictures else DEFAULT_PROBES
