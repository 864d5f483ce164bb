"""Integration tests: a real gRPC server on loopback, the tiny model, diffusers as the reference."""
