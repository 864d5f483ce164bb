"""The welcome page: what the lessons are and whether the image server is up."""

import streamlit as st

from frontend.client import get_client
from frontend.drawing.views import guarded

st.title("Diffusion Classroom")
st.markdown(
    "Type a prompt, and a text-to-image model paints a picture. Here you can watch it do so, step by step, "
    "with the **real** model's numbers, not an illustration."
)

# Each lesson's page, and what it shows (paths as the entry page, app.py, names them).
LESSONS = [
    ("screens/lessons/pipeline.py", "1. The whole pipeline", "the three stages and what flows between them."),
    ("screens/lessons/words.py", "2. Words to numbers", "how your prompt becomes tokens and vectors."),
    (
        "screens/lessons/noise_to_image.py",
        "3. From noise to image",
        "the picture appearing out of noise, step by step.",
    ),
    ("screens/lessons/guidance.py", "4. Guidance", "the arithmetic that makes the picture follow the prompt."),
    ("screens/lessons/change_one_word.py", "5. Change one word", "how a small change in the prompt changes the path."),
    (
        "screens/lessons/seeds_schedulers.py",
        "6. Seeds and schedulers",
        "where the starting noise comes from, and the ways to walk from it.",
    ),
    (
        "screens/lessons/attention.py",
        "7. Which word paints where",
        "where in the picture each word of the prompt acts.",
    ),
    (
        "screens/lessons/branch.py",
        "8. When does the picture decide?",
        "change the prompt part-way and see what is settled.",
    ),
    (
        "screens/lessons/learned_from.py",
        "9. What it learned from",
        "the very pictures it learned from, how it learned, what it never saw, and whether it copies.",
    ),
    (
        "screens/lessons/teach_word.py",
        "10. Teach it a new word",
        "draw a new shape as a class, teach the model its word, and watch it learn.",
    ),
    ("screens/playground.py", "Playground", "try any prompt and setting."),
    ("screens/model.py", "The model", "what the model itself is made of."),
]
for path, title, about in LESSONS:
    st.page_link(path, label=f"**{title}**: {about}")

info = guarded(get_client().model_info)
if info is not None:
    st.success(
        f"The image server is running the **{info.model_display_name or info.model_id}** model "
        f"({info.model_id}) on {info.device} ({info.dtype}).",
        icon=":material/check_circle:",
    )
