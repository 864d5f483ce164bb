"""Trajectories: the hub (single flight), the append-only log, the Redis cache, the wire frames."""
