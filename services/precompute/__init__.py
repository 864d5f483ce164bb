"""The precompute job: renders the lesson catalog into the cache, and moves lesson packs between Redis servers."""
