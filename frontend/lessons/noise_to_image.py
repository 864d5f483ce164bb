"""Lesson 3: from noise to image - every step's latent, the model's guess of x0, and how fast it changes."""

import itertools

import numpy as np
import pandas as pd
import streamlit as st

from frontend.catalog import open_prompt_example
from frontend.charts import per_step
from frontend.player import play_trajectory
from frontend.views import PREVIEW_NOTE, show_channels

st.title("3. From noise to image")
st.markdown(
    "Generation starts from pure Gaussian noise drawn from the **seed** and removes a little of it at every "
    "step. At each step the model predicts the noise ε in the latent $x_t$; from that prediction follows its "
    "current guess of the clean latent, $x_0 = (x_t - \\sqrt{1-\\bar\\alpha_t}\\,\\varepsilon)/\\sqrt{\\bar\\alpha_t}$ "
    "(for schedulers in sigma form, $x_0 = x - \\sigma\\varepsilon$). Watch the guess: the layout appears early, "
    "the details late."
)

example, run = open_prompt_example("noise-example")

st.markdown("**Play the run**, or stop on a step (space plays, the arrow keys step): the charts below follow.")
# Step 0 is the starting noise; the player sends back the step the student stops on.
step = play_trajectory(run, key="noise-player", start=len(run.steps) // 3, report=True, width=280)
latent = run.initial_latent if step == 0 else run.steps[step - 1].latent
if any(s.decoded_x0 is not None for s in run.steps):
    st.caption(
        PREVIEW_NOTE + " The third picture is the same guess decoded into pixels (by the VAE, or its small "
        "stand-in TAESD): what the guess really looks like at every step."
    )
else:
    st.caption(PREVIEW_NOTE + " The real image appears only after the VAE decode, below.")

st.markdown(
    f"**The four channels of the latent at step {step}** (grey is zero): the model works on these, not on pixels."
)
show_channels(latent, "x_t")


def rms_changes(arrays: list[np.ndarray]) -> list[float]:
    return [float(np.sqrt(((b - a) ** 2).mean())) for a, b in itertools.pairwise(arrays)]


# Step k's change is from step k-1 to step k. The guess has none at step 1: there is no guess before it.
change = rms_changes(run.latents())
guess_change = rms_changes([s.predicted_x0 for s in run.steps])
changes = pd.DataFrame(
    [{"step": k, "value": v, "series": "the latent x_t"} for k, v in enumerate(change, start=1)]
    + [{"step": k, "value": v, "series": "the guess x0"} for k, v in enumerate(guess_change, start=2)]
)
st.markdown(
    "**How much each step changes** the latent and the guess (root-mean-square change per number, from the "
    "step before; the guess starts at step 2, as step 1 makes the first one). The dashed line is the step above."
)
st.vega_lite_chart(per_step(changes, step, "change from the step before"), width="stretch")
st.markdown(
    f"The model was trained on 1,000 noise levels; this run visits {run.total_steps} of them: "
    f"{', '.join(f'{t:g}' for t in run.timesteps[:8])}{' …' if run.total_steps > 8 else ''}. "
    "Same seed and settings give the same start, and the same image on the same hardware and software."
)
st.image(run.image, caption="the VAE's decode of the last latent: the real image", width=320)
