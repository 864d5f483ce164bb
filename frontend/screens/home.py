"""The welcome page: what the lessons are and whether the image server is up."""

import streamlit as st

from frontend.client import get_client
from frontend.drawing.views import guarded
from frontend.language import N_, _

st.title(_("Diffusion Classroom"))
st.markdown(
    _(
        "Type a prompt, and a text-to-image model paints a picture. Here you can watch it do so, step by step, "
        "with the **real** model's numbers, not an illustration."
    )
)

# Each lesson's page, and what it shows (paths as the entry page, app.py, names them).
LESSONS = [
    ("screens/lessons/pipeline.py", N_("1. The whole pipeline"), N_("the three stages and what flows between them.")),
    ("screens/lessons/words.py", N_("2. Words to numbers"), N_("how your prompt becomes tokens and vectors.")),
    (
        "screens/lessons/noise_to_image.py",
        N_("3. From noise to image"),
        N_("the picture appearing out of noise, step by step."),
    ),
    ("screens/lessons/guidance.py", N_("4. Guidance"), N_("the arithmetic that makes the picture follow the prompt.")),
    (
        "screens/lessons/change_one_word.py",
        N_("5. Change one word"),
        N_("how a small change in the prompt changes the path."),
    ),
    (
        "screens/lessons/seeds_schedulers.py",
        N_("6. Seeds and schedulers"),
        N_("where the starting noise comes from, and the ways to walk from it."),
    ),
    (
        "screens/lessons/attention.py",
        N_("7. Which word paints where"),
        N_("where in the picture each word of the prompt acts."),
    ),
    (
        "screens/lessons/branch.py",
        N_("8. When does the picture decide?"),
        N_("change the prompt part-way and see what is settled."),
    ),
    (
        "screens/lessons/learned_from.py",
        N_("9. What it learned from"),
        N_("the very pictures it learned from, how it learned, what it never saw, and whether it copies."),
    ),
    (
        "screens/lessons/teach_word.py",
        N_("10. Teach it a new word"),
        N_("draw a new shape as a class, teach the model its word, and watch it learn."),
    ),
    ("screens/playground.py", N_("Playground"), N_("try any prompt and setting.")),
    ("screens/model.py", N_("The model"), N_("what the model itself is made of.")),
]
for path, title, about in LESSONS:
    st.page_link(path, label=f"**{_(title)}**: {_(about)}")

info = guarded(get_client().model_info)
if info is not None:
    st.success(
        _("The image server is running the **{name}** model ({model_id}) on {device} ({dtype}).").format(
            name=info.model_display_name or info.model_id, model_id=info.model_id, device=info.device, dtype=info.dtype
        ),
        icon=":material/check_circle:",
    )
