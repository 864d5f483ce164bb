"""Diffusion Classroom's tests: unit, integration (real servers on loopback) and benchmarks."""
