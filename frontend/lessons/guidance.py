"""Lesson 4: classifier-free guidance - two noise predictions and the arithmetic between them."""

import numpy as np
import streamlit as st

from frontend import trajectory
from frontend.catalog import examples, open_prompt_example, where
from frontend.views import diverging, enlarge, grey, guarded

st.title("4. Guidance")
st.markdown(
    "Each step runs the UNet **twice**: once with your prompt (the *conditional* prediction c) and once with "
    "an empty prompt, or the negative prompt (the *unconditional* prediction u). The step then uses "
    "**u + g·(c − u)**: g = 0 is the unconditional prediction, g = 1 the conditional one, and a larger g "
    "pushes further in the prompt's direction (7 to 7.5 is typical; very high values oversaturate)."
)

example, run = open_prompt_example("guidance-example")

step = st.slider("Step", 1, len(run.steps), max(1, len(run.steps) // 4))
u, c, guided = run.steps[step - 1].noise
g = run.request.guidance_scale
limit = float(max(np.abs(u).max(), np.abs(c).max()))
cols = st.columns(4)
cols[0].image(enlarge(grey(u[0], limit), 160), caption="u: unconditional (channel 0)")
cols[1].image(enlarge(grey(c[0], limit), 160), caption="c: conditional (channel 0)")
cols[2].image(enlarge(diverging(c[0] - u[0]), 160), caption="c − u: what the prompt adds")
cols[3].image(enlarge(grey(guided[0], limit * max(g, 1)), 160), caption=f"u + {g:g}·(c − u): guided")
st.caption(
    f"At this step the prompt's push, c − u, averages {np.abs(c - u).mean():.3f} per number; "
    f"guidance multiplies it by {g:g}."
)

st.subheader("The same prompt at different guidance scales")
same = where(
    examples("prompt-pairs"), seed=example.label("seed"), pair=example.label("pair"), side=example.label("side")
)
runs = [
    (item.label("guidance_scale"), guarded(lambda item=item: trajectory.load(item.request, lesson_entry=item.id)))
    for item in same
]
columns = st.columns(max(1, len(runs)))
for column, (scale, result) in zip(columns, runs, strict=False):
    if result is not None:
        column.image(result.image, caption=f"g = {scale}")
st.info(
    "In diffusers' own pipeline, g = 0 and g = 1 both give the conditional image: it skips guidance for g ≤ 1. "
    "Here the formula is applied at every g, so g = 0 really is the unconditional image.",
    icon=":material/info:",
)

st.subheader("Try it yourself")
with st.form("live-guidance"):
    scale = st.slider("Guidance scale g", 0.0, 20.0, 3.0, 0.5)
    negative = st.text_input("Negative prompt (what to push away from)", "")
    go = st.form_submit_button("Generate")
if go:
    request = run.request
    request.guidance_scale = scale
    request.negative_prompt = negative
    with st.spinner("The model is working…"):
        mine = guarded(lambda: trajectory.load(request))
    if mine is not None:
        st.image(
            mine.image, caption=f"g = {scale:g}" + (f", negative prompt “{negative}”" if negative else ""), width=320
        )
