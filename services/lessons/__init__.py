"""The curated lesson catalog: which trajectories each lesson opens with, precomputed."""
