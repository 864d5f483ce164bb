"""The model and its denoising loop: the spec, denoise (one guided step, 1 to 6), batching, models, probes."""
