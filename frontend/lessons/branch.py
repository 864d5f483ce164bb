"""Lesson 8: when does the picture decide? One run, its prompt switched at step k."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from frontend import trajectory
from frontend.catalog import examples
from frontend.charts import per_step
from frontend.client import get_client
from frontend.player import play_trajectory
from frontend.views import guarded, plain
from services.common.api import pb

PROBES = ["latent", "predicted_x0", "latent_preview", "predicted_x0_preview"]

st.title("8. When does the picture decide?")
st.markdown(
    "A generation is one loop of denoising steps. Here the loop starts with one prompt and, after **k** "
    "steps, goes on with another: same seed, same scheduler, nothing else changed. The first k steps are "
    "exactly the original run's, number for number; from step k on, the UNet reads the new prompt. "
    "Switched early, the new prompt has time to make its own picture. Switched late, the layout and "
    "colours are already settled, and only details can still change."
)


def distance_from(run: trajectory.TrajectoryView, original: trajectory.TrajectoryView) -> list[float]:
    """How far each step's latent is from the original run's at the same step (0 while they are one run)."""
    return [
        float(np.linalg.norm(a - b)) if a is not None and b is not None else float("nan")
        for a, b in zip(run.latents(), original.latents(), strict=False)
    ]


items = examples("branch-at-step")
if not items:
    st.info("No branching examples are set up on this server; try your own below.")
else:
    first = items[0].request
    total = first.num_inference_steps
    st.markdown(
        f"From **{plain(first.prompt)}** to **{plain(first.branch.prompt)}**, "
        f"switched at step k of {total} (seed {first.seed})."
    )
    by_step = {int(item.label("branch_at_step")): item for item in items}
    steps = sorted(by_step)
    runs: dict[int, trajectory.TrajectoryView] = {}
    columns = st.columns(len(steps))
    for column, k in zip(columns, steps, strict=True):
        item = by_step[k]
        run = guarded(lambda item=item: trajectory.load(item.request, probes=PROBES, lesson_entry=item.id))
        if run is None:
            continue
        runs[k] = run
        caption = "never switched" if k >= total else ("the new prompt from the start" if k == 0 else f"k = {k}")
        column.image(run.image, caption=caption, width="stretch")
    st.caption(
        "Left: switched at step 0, the run is the new prompt's own picture. Right: never switched, the "
        "original. In between, the later the switch, the more of the original survives."
    )

    if runs:
        st.subheader("Follow one of them")
        chosen = st.select_slider(
            "Switched at step",
            options=sorted(runs),
            value=sorted(runs)[len(runs) // 2],
            format_func=lambda k: "never" if k >= total else str(k),
        )
        run = runs[chosen]
        play_trajectory(run, key="branch-player", start=min(chosen, len(run.steps)))
        original = runs.get(max(runs))
        if original is not None and max(runs) >= total:
            data = pd.DataFrame(
                {"step": list(range(len(run.steps) + 1)), "value": distance_from(run, original), "series": "distance"}
            )
            st.markdown(
                "**How far this run's latent is from the original's, step by step.** Zero up to the switch "
                "(the same numbers), then the new prompt pulls it away."
            )
            st.vega_lite_chart(per_step(data, chosen, "distance between the latents"), width="stretch")

st.subheader("Try it yourself")
info = guarded(get_client().model_info)
if info is None:
    st.stop()
with st.form("branch-own"):
    before = st.text_input("Start with", "a red circle on the left", max_chars=info.limits.max_prompt_chars)
    after = st.text_input("Switch to", "a blue square on the right", max_chars=info.limits.max_prompt_chars)
    steps_total = info.default_steps
    k = st.slider("Switch at step", 0, steps_total, steps_total // 4)
    seed = st.number_input("Seed", min_value=0, max_value=info.limits.max_seed or None, value=3)
    go = st.form_submit_button("Run both", type="primary")
if go:
    request = pb.GenerateRequest(
        prompt=before, seed=int(seed), num_inference_steps=steps_total, scheduler="ddim",
        width=info.default_width, height=info.default_height,
    )  # fmt: skip
    branched = pb.GenerateRequest()
    branched.CopyFrom(request)
    branched.branch.at_step = k
    branched.branch.prompt = after
    plain_run = guarded(lambda: trajectory.load(request, probes=PROBES, planned="the original run"))
    branch_run = guarded(lambda: trajectory.load(branched, probes=PROBES, planned="the switched run"))
    if plain_run is not None and branch_run is not None:
        left, right = st.columns(2)
        left.image(plain_run.image, caption=f"{before}", width="stretch")
        right.image(branch_run.image, caption=f"switched to “{after}” at step {k}", width="stretch")
        same = sum(
            a is not None and b is not None and np.array_equal(a, b)
            for a, b in zip(plain_run.latents()[1:], branch_run.latents()[1:], strict=False)
        )
        st.markdown(f"The two runs share their first **{same}** steps exactly, as they should: k = {k}.")
