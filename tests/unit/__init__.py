"""Unit tests: one part at a time, boundaries faked where needed."""
