"""The front end's fixtures (a lesson server, the front end pointed at it), for the attacks through it."""

from tests.frontend.conftest import frontend_env, lesson_server

__all__ = ["frontend_env", "lesson_server"]
