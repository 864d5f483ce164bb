"""Lesson 6: seeds pick the starting noise; schedulers pick the path from it."""

import numpy as np
import pandas as pd
import streamlit as st

from frontend import trajectory
from frontend.catalog import examples, values, where
from frontend.views import guarded, plain

st.title("6. Seeds and schedulers")

st.subheader("The seed picks the starting noise")
gallery = examples("seed-gallery")
if gallery:
    st.markdown(f"**{plain(gallery[0].request.prompt)}**: the same prompt and settings, a different seed each time.")
    columns = st.columns(min(6, len(gallery)))
    for index, item in enumerate(gallery):
        run = guarded(lambda item=item: trajectory.load(item.request, probes=["latent_preview"], lesson_entry=item.id))
        if run is not None:
            columns[index % len(columns)].image(run.image, caption=f"seed {item.label('seed')}")

st.subheader("The scheduler picks the path")
st.markdown(
    "Schedulers are different numerical methods for the same denoising problem. Deterministic ones (DDIM, "
    "Euler, DPM-Solver++, LMS, PNDM) settle on one picture as you add steps; an **ancestral** one (Euler "
    "Ancestral) adds fresh noise at every step, so its picture keeps changing with the step count."
)
comparison = examples("scheduler-comparison")
if not comparison:
    st.stop()
steps = values(comparison, "steps")
changes = {}
for scheduler in values(comparison, "scheduler"):
    row = st.columns(len(steps) + 1)
    row[0].markdown(f"**{scheduler}**")
    images = []
    for column, count in zip(row[1:], steps, strict=True):
        item = where(comparison, scheduler=scheduler, steps=count)[0]
        run = guarded(lambda item=item: trajectory.load(item.request, probes=["latent_preview"], lesson_entry=item.id))
        if run is not None:
            column.image(run.image, caption=f"{count} steps")
            images.append(run.image.astype(np.float32))
    if len(images) >= 2:
        changes[scheduler] = float(np.abs(images[-1] - images[-2]).mean())
if changes:
    st.markdown(f"**How much the picture changes between {steps[-2]} and {steps[-1]} steps** (mean pixel difference):")
    st.bar_chart(pd.DataFrame({"change": changes}))
