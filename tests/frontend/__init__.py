"""Front-end tests: every page through AppTest against a real service, and a real browser."""
