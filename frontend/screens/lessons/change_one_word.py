"""Lesson 5: change one word - two prompts, the same seed, and where their trajectories part."""

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from frontend.client import get_client
from frontend.drawing.charts import CURRENT_STEP_COLOUR, MARKDOWN_COLOURS, PAIR_COLOURS, per_step
from frontend.drawing.look import alt_text
from frontend.drawing.views import PREVIEW_NOTE, guarded
from frontend.language import _
from frontend.material.claims import mean_difference, parting_sentence, rms_distances, sigma_form, x_t_latents
from frontend.material.examples import examples, values, where
from frontend.material.labels import bracketed, differing_words, highlighted
from frontend.player import PlayerFrame, play
from frontend.stream.load import load

st.title(_("5. Change one word"))
st.markdown(
    _(
        "Two prompts that differ by a few words, with the **same seed**: both start from exactly the same noise, "
        "so every difference between the pictures comes from the text. Where the two paths part shows when the "
        "change takes effect."
    )
)

info = guarded(get_client().model_info)
pairs = where(examples("prompt-pairs"), guidance_scale="7")
if not pairs:
    st.info(_("No prompt pairs are set up on this server."))
    st.stop()


def pair_prompts(pair: str) -> tuple[str, str]:
    """The pair's two prompts, as the catalog gives them."""
    return tuple(where(pairs, pair=pair, side=side)[0].request.prompt for side in "ab")


def describe(pair: str) -> str:
    marked_a, marked_b = differing_words(*pair_prompts(pair))
    return f"{bracketed(marked_a)}  →  {bracketed(marked_b)}"


pair = st.selectbox(_("Pair"), values(pairs, "pair"), format_func=describe)
seed = st.selectbox(_("Seed"), values(where(pairs, pair=pair), "seed"))
a_item, b_item = (where(pairs, pair=pair, seed=seed, side=side)[0] for side in "ab")
a = guarded(lambda: load(a_item.request, lesson_entry=a_item.id))
b = guarded(lambda: load(b_item.request, lesson_entry=b_item.id))
if a is None or b is None:
    st.stop()

marked = differing_words(a.request.prompt, b.request.prompt)
for column, words, colour in zip(st.columns(2), marked, MARKDOWN_COLOURS, strict=True):
    column.markdown(highlighted(words, colour))
# Both guesses step by step, played together; the player sends back the step the student stops on.
total = len(a.steps)
# Where the lesson was rendered with them, each guess decoded by the VAE (or TAESD) too: the real picture.
decoded = all(step.decoded_x0 is not None for step in (*a.steps, *b.steps))
first = PlayerFrame(
    _("the same starting noise (step 0 of {total})").format(total=total),
    (a.initial_preview, b.initial_preview, None, None) if decoded else (a.initial_preview, b.initial_preview),
    missing=_("no guess yet: the first step makes it"),
)
frames = [first] + [
    PlayerFrame(
        _("step {step} of {total}").format(step=k, total=total),
        (x.x0_preview, y.x0_preview, x.decoded_x0, y.decoded_x0) if decoded else (x.x0_preview, y.x0_preview),
        x.timestep,
        x.sigma,
    )
    for k, x, y in zip(range(1, total + 1), a.steps, b.steps, strict=True)
]
panels = [_("the guess, a rough sketch: {prompt}").format(prompt=bracketed(words)) for words in marked]
if decoded:
    panels += [_("the guess decoded: {prompt}").format(prompt=bracketed(words)) for words in marked]
step = play(frames, panels, key="change-player", start=total // 4, report=True, width=200 if decoded else 300)
for column, run in zip(st.columns(2), (a, b), strict=True):
    column.image(run.image, caption=_("final image"), width=300,
                 alt=alt_text(_("the final image"), run.request.prompt,
                              _("seed {seed}").format(seed=run.request.seed)))  # fmt: skip
st.caption(_(PREVIEW_NOTE))

# Both latents as x_t: a sigma-form loop carries x = x_t * sqrt(1 + sigma^2): early distances would be mostly sigma.
in_sigma_form = info is not None and sigma_form(info, a)
a_x_t, b_x_t = x_t_latents(a, in_sigma_form), x_t_latents(b, in_sigma_form)
a_latents, b_latents = np.stack(a_x_t), np.stack(b_x_t)
distance = rms_distances(a_x_t, b_x_t)
st.markdown(
    _(
        "**How far apart the two latents are**, step by step (root-mean-square difference per number of x_t, the "
        "loop's x divided by √(1+σ²); 0 at the start: the same noise). The dashed line is the step above."
    )
    if in_sigma_form
    else _(
        "**How far apart the two latents are**, step by step (root-mean-square difference per number of x_t; 0 at "
        "the start: the same noise). The dashed line is the step above."
    )
)
apart = pd.DataFrame({"step": range(len(distance)), "value": distance, "series": _("distance between the two latents")})
st.vega_lite_chart(per_step(apart, step, _("distance")), width="stretch")
guesses = None
if decoded:  # what the student sees part: the two decoded guesses, from step 1
    guesses = [mean_difference(x.decoded_x0, y.decoded_x0) for x, y in zip(a.steps, b.steps, strict=True)]
st.markdown(parting_sentence(distance, guesses))

# Both trajectories as points in 2-D: the two directions along which all their latents vary most (PCA).
points = np.concatenate([a_latents, b_latents]).reshape(2 * len(a_latents), -1)
centred = points - points.mean(axis=0)
_directions, _spread, axes = np.linalg.svd(centred, full_matrices=False)
xy = centred @ axes[:2].T
legend = [bracketed(words) for words in marked]
frame = pd.DataFrame(
    {
        "x": xy[:, 0],
        "y": xy[:, 1],
        "step": list(range(len(a_latents))) * 2,
        "prompt": [legend[0]] * len(a_latents) + [legend[1]] * len(b_latents),
    }
)
colour = alt.Color(
    "prompt:N",
    scale=alt.Scale(domain=legend, range=list(PAIR_COLOURS)),
    sort=legend,
    legend=alt.Legend(
        orient="bottom",
        direction="vertical",
        title=_("prompt (the words that differ in « »)"),
        labelLimit=0,
        titleLimit=0,
    ),
)
paths = (
    alt.Chart(frame)
    .mark_line(point=True)
    .encode(
        x=alt.X("x:Q", title=_("first direction")),
        y=alt.Y("y:Q", title=_("second direction")),
        color=colour,
        order="step:Q",
        tooltip=[alt.Tooltip("prompt:N", title=_("prompt")), alt.Tooltip("step:Q", title=_("step"))],
    )
)
now = (
    alt.Chart(frame[frame["step"] == step])
    .mark_point(size=220, filled=False, strokeWidth=3, color=CURRENT_STEP_COLOUR)
    .encode(
        x="x:Q", y="y:Q", tooltip=[alt.Tooltip("prompt:N", title=_("prompt")), alt.Tooltip("step:Q", title=_("step"))]
    )
)
st.markdown(
    _(
        "**Both paths in two dimensions** (PCA of all their latents; each point is a step, the circled points are "
        "step {step}):"
    ).format(step=step)
)
paths_in_words = _(
    "Two paths, one per prompt ({first} and {second}), each point a step of its latent, on the two directions along "
    "which all their latents vary most (PCA); step {step} circled on both."
).format(first=legend[0], second=legend[1], step=step)
st.altair_chart((paths + now).properties(description=paths_in_words), width="stretch")
