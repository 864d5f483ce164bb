"""Attacks on a real stack, each asserting its defence."""
