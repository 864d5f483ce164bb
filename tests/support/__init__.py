"""Helpers the test suites and benchmarks share: real servers started on loopback."""
