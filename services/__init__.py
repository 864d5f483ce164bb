"""Diffusion Classroom's back-end services: inference, precompute, and the code they share."""
