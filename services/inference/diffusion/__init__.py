"""The model and its denoising loop: the spec, the runner, batching, models, schedulers, probes."""
