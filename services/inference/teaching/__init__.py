"""Lesson 10's room: a class teaches its own copy of the model a new word."""
