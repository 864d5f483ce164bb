"""The inference service: a Stable Diffusion model run step by step behind a gRPC API."""
