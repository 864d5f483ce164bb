"""Deployment tests: the compose file, the Kubernetes manifests, and the containers' entry points."""
