"""The welcome page: what the lessons are and whether the image server is up."""

import streamlit as st

from frontend.client import get_client
from frontend.views import guarded

st.title("Diffusion Classroom")
st.markdown(
    """
Type a prompt, and a text-to-image model paints a picture. Here you can watch it
do so, step by step, with the **real** model's numbers, not an illustration.

1. **The whole pipeline**: the three stages and what flows between them.
2. **Words to numbers**: how your prompt becomes tokens and vectors.
3. **From noise to image**: the picture appearing out of noise, step by step.
4. **Guidance**: the arithmetic that makes the picture follow the prompt.
5. **Change one word**: how a small change in the prompt changes the path.
6. **Seeds and schedulers**: where the starting noise comes from, and the ways to walk from it.

Then try anything in the **Playground**, and see what the model itself is made
of on **The model**.
"""
)

info = guarded(get_client().model_info)
if info is not None:
    st.success(
        f"The image server is running the **{info.model_display_name or info.model_id}** model "
        f"({info.model_id}) on {info.device} ({info.dtype}).",
        icon=":material/check_circle:",
    )
