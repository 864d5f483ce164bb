"""The class map: many trajectories drawn as paths in one 2-D projection of their latents.

Every point of every path (the starting noise, then the latent after each step)
is one row; principal component analysis fitted on all the rows together finds
the two directions along which they spread most, and each path is drawn there.
Because one projection serves all the paths, pictures that end near each other
in the latent space end near each other on the map.

Each latent is first averaged down to a 2 x 2 grid per channel: which colours
sit in which quarter of the picture. At full size the two axes would follow the
fine grain each seed leaves (on the Shapes model two seeds of "a red circle on
the left" then end farther apart than some different prompts do); the coarse
grid keeps what the prompt decides, so similar prompts end near each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

POOLED_SIDE = 2  # latents are averaged down to (about) 2 x 2 per channel before mapping
MAX_POINTS = 51  # a path keeps at most this many points, its first and last among them


def pooled_path(latents: list[np.ndarray]) -> np.ndarray:
    """A trajectory's latents ([c, h, w] each) as map rows: float32 [points, dims], pooled and thinned."""
    channels, height, width = latents[0].shape
    factor = 1
    while height // factor > POOLED_SIDE and height % (factor * 2) == 0 and width % (factor * 2) == 0:
        factor *= 2
    keep = np.unique(np.linspace(0, len(latents) - 1, min(MAX_POINTS, len(latents))).round().astype(int))
    rows = []
    for index in keep:
        latent = np.asarray(latents[index], dtype=np.float32)
        pooled = latent.reshape(channels, height // factor, factor, width // factor, factor).mean(axis=(2, 4))
        rows.append(pooled.reshape(-1))
    return np.stack(rows)


@dataclass(frozen=True)
class Projection:
    paths: list[np.ndarray]  # float32 [points, 2] each, in the order given
    explained_variance: float  # the share of the points' spread the two axes show


def project(paths: list[np.ndarray]) -> Projection:
    """Fit PCA on every row of every path (all of one width) and project each path onto its first two axes."""
    if not paths:
        return Projection([], 0.0)
    rows = np.concatenate(paths).astype(np.float64)
    centred = rows - rows.mean(axis=0)
    _, singular, axes = np.linalg.svd(centred, full_matrices=False)
    axes = axes[:2]
    if axes.shape[0] < 2:  # a single point: nothing spreads, every path sits at the origin
        axes = np.vstack([axes, np.zeros((2 - axes.shape[0], rows.shape[1]))])
    spread = float((singular**2).sum())
    explained = float((singular[:2] ** 2).sum() / spread) if spread > 0 else 0.0
    mean = rows.mean(axis=0)
    projected = [((path - mean) @ axes.T).astype(np.float32) for path in paths]
    return Projection(projected, explained)
