"""Lesson 5: change one word - two prompts, the same seed, and where their trajectories part."""

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from frontend import trajectory
from frontend.catalog import examples, values, where
from frontend.views import PREVIEW_NOTE, enlarge, guarded, plain

st.title("5. Change one word")
st.markdown(
    "Two prompts that differ by a few words, with the **same seed**: both start from exactly the same noise, "
    "so every difference between the pictures comes from the text. Where the two paths part shows when the "
    "change takes effect."
)

pairs = where(examples("prompt-pairs"), guidance_scale="7")
if not pairs:
    st.info("No prompt pairs are set up on this server.")
    st.stop()
pair = st.selectbox("Pair", values(pairs, "pair"))
seed = st.selectbox("Seed", values(where(pairs, pair=pair), "seed"))
a_item, b_item = (where(pairs, pair=pair, seed=seed, side=side)[0] for side in "ab")
a = guarded(lambda: trajectory.load(a_item.request, lesson_entry=a_item.id))
b = guarded(lambda: trajectory.load(b_item.request, lesson_entry=b_item.id))
if a is None or b is None:
    st.stop()

step = st.slider("Step", 0, len(a.steps), len(a.steps) // 4)
left, right = st.columns(2)
for column, run in ((left, a), (right, b)):
    picture = run.initial_preview if step == 0 else run.steps[step - 1].x0_preview
    column.markdown(f"**{plain(run.request.prompt)}**")
    column.image(enlarge(picture, 300), caption="starting noise" if step == 0 else f"guess of x0 at step {step}")
    column.image(run.image, caption="final image", width=300)
st.caption(PREVIEW_NOTE)

a_latents, b_latents = np.stack(a.latents()), np.stack(b.latents())
distance = np.sqrt(((a_latents - b_latents) ** 2).reshape(len(a_latents), -1).mean(axis=1))
st.markdown("**How far apart the two latents are**, step by step (0 at the start: the same noise):")
st.line_chart(pd.DataFrame({"distance": distance}))

# Both trajectories as points in 2-D: the two directions along which all their latents vary most (PCA).
points = np.concatenate([a_latents, b_latents]).reshape(2 * len(a_latents), -1)
centred = points - points.mean(axis=0)
_, _, axes = np.linalg.svd(centred, full_matrices=False)
xy = centred @ axes[:2].T
frame = pd.DataFrame(
    {
        "x": xy[:, 0],
        "y": xy[:, 1],
        "step": list(range(len(a_latents))) * 2,
        "prompt": [a.request.prompt] * len(a_latents) + [b.request.prompt] * len(b_latents),
    }
)
chart = (
    alt.Chart(frame)
    .mark_line(point=True)
    .encode(
        x="x",
        y="y",
        color=alt.Color("prompt", legend=alt.Legend(orient="bottom")),
        order="step",
        tooltip=["prompt", "step"],
    )
)
st.markdown("**Both paths in two dimensions** (PCA of all their latents; each point is a step):")
st.altair_chart(chart, use_container_width=True)
