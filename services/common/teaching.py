"""Lesson 10's numbers that the service enforces and the pages say: how many drawings teaching needs and takes."""

MIN_DRAWINGS = 4  # a class's set must hold this many before its teacher can teach
PER_STUDENT = 3  # drawings one student may have in the set
PER_CLASS = 32  # drawings a class's set holds at most
# Training steps when the teacher names none: the measured recipe (services/inference/diffusion/teach.py).
DEFAULT_STEPS = 250
