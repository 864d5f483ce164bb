"""Code every side of the product shares: the generated API, tensor and image codecs."""
