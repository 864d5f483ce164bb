"""Lesson 3: from noise to image - every step's latent, the model's guess of x0, and how fast it changes."""

import pandas as pd
import streamlit as st

from frontend.client import get_client
from frontend.drawing.charts import per_step
from frontend.drawing.look import alt_text
from frontend.drawing.views import PREVIEW_NOTE, guarded, show_channels
from frontend.language import _, number
from frontend.material.claims import (
    latent_sigmas,
    noise_levels_sentence,
    rms_changes,
    settling_sentence,
    sigma_form,
    x_t_latents,
)
from frontend.material.examples import open_prompt_example
from frontend.material.labels import scheduler_names
from frontend.player import play_trajectory

st.title(_("3. From noise to image"))
st.markdown(
    _(
        "Generation starts from pure Gaussian noise drawn from the **seed** and removes a little of it at every "
        "step. At each step the model predicts the noise ε in the latent $x_t$; from that prediction follows its "
        "current guess of the clean latent, "
        "$x_0 = (x_t - \\sqrt{1-\\bar\\alpha_t}\\,\\varepsilon)/\\sqrt{\\bar\\alpha_t}$."
        " Watch the guess: what appears early, and what late, the charts below measure."
    )
)

info = guarded(get_client().model_info)
if info is None:
    st.stop()
example, run = open_prompt_example("noise-example")
in_sigma_form = sigma_form(info, run)
scheduler = scheduler_names(info).get(run.request.scheduler, run.request.scheduler)
if in_sigma_form:
    # The latent such a loop carries is x = x0 + sigma * eps: its spread starts near sigma, not 1.
    first = run.latents()[0]
    st.markdown(
        _(
            "This run's scheduler, **{scheduler}**, works in *sigma form*: the latent its loop carries is "
            "$x = x_0 + \\sigma\\varepsilon$, which is $x_t\\sqrt{{1+\\sigma^2}}$, so there "
            "$x_0 = x - \\sigma\\varepsilon$. Here x starts at σ = {sigma}, with a spread (standard deviation) of "
            "{spread} against 1 for $x_t$. The channels and the chart below show $x_t = x/\\sqrt{{1+\\sigma^2}}$."
        ).format(
            scheduler=scheduler,
            sigma=number(latent_sigmas(run)[0], digits=2),
            spread=number(float(first.std()), digits=2),
        )
    )

st.markdown(_("**Play the run**, or stop on a step (space plays, the arrow keys step): the charts below follow."))
# Step 0 is the starting noise; the player sends back the step the student stops on.
step = play_trajectory(run, key="noise-player", start=len(run.steps) // 3, report=True, width=280)
x_t = x_t_latents(run, in_sigma_form)
if any(s.decoded_x0 is not None for s in run.steps):
    st.caption(
        _(PREVIEW_NOTE)
        + " "
        + _(
            "The third picture is the same guess decoded into pixels (by the VAE, or its small stand-in TAESD): "
            "what the guess really looks like at every step."
        )
    )
else:
    st.caption(_(PREVIEW_NOTE) + " " + _("The real image appears only after the VAE decode, below."))

st.markdown(
    _(
        "**The four channels of the latent at step {step}** (grey is zero): the model works on these, not on pixels."
    ).format(step=step)
)
show_channels(x_t[step], "x_t")

# Step k's change is from step k-1 to step k. The guess has none at step 1: there is no guess before it.
change = rms_changes(x_t)
guess_change = rms_changes([s.predicted_x0 for s in run.steps])
latent_series, guess_series = _("the latent x_t"), _("the guess x0")
changes = pd.DataFrame(
    [{"step": k, "value": v, "series": latent_series} for k, v in enumerate(change, start=1)]
    + [{"step": k, "value": v, "series": guess_series} for k, v in enumerate(guess_change, start=2)]
)
st.markdown(
    _(
        "**How much each step changes** the latent and the guess (root-mean-square change per number, from the "
        "step before; the guess starts at step 2, as step 1 makes the first one; the latent is x_t = x/√(1+σ²): "
        "the loop's own x would mostly show σ shrinking). The dashed line is the step above."
    )
    if in_sigma_form
    else _(
        "**How much each step changes** the latent and the guess (root-mean-square change per number, from the "
        "step before; the guess starts at step 2, as step 1 makes the first one). The dashed line is the step above."
    )
)
st.vega_lite_chart(per_step(changes, step, _("change from the step before")), width="stretch")
if guess_change:
    st.markdown(settling_sentence(guess_change))
st.markdown(
    noise_levels_sentence(run.timesteps, info.num_train_timesteps or 1000)
    + " "
    + _("Same seed and settings give the same start, and the same image on the same hardware and software.")
)
st.image(
    run.image, caption=_("the VAE's decode of the last latent: the real image"), width=320,
    alt=alt_text(_("the final image, the VAE's decode of the last latent"), run.request.prompt,
                 _("after all {count} steps").format(count=len(run.steps))),
)  # fmt: skip
