"""Lesson 4: classifier-free guidance - two noise predictions and the arithmetic between them."""

import numpy as np
import pandas as pd
import streamlit as st

from frontend.client import get_client
from frontend.drawing.charts import per_step
from frontend.drawing.look import alt_text
from frontend.drawing.views import diverging, enlarge, grey, guarded, plain
from frontend.language import N_, _, number
from frontend.material.claims import high_guidance_sentence, mean_difference
from frontend.material.examples import examples, open_prompt_example, where
from frontend.player import PlayerFrame, guess_panel, guess_picture, play
from frontend.stream.load import load
from frontend.stream.wire import Step
from services.common.api import pb

st.title(_("4. Guidance"))
st.markdown(
    _(
        "Each step runs the UNet **twice**: once with your prompt (the *conditional* prediction c) and once with "
        "an empty prompt, or the negative prompt (the *unconditional* prediction u). The step then uses "
        "**u + g·(c − u)**: g = 0 is the unconditional prediction, g = 1 the conditional one, and a larger g "
        "pushes further in the prompt's direction. What a much larger g does to the picture is measured below, on "
        "this model."
    )
)

info = guarded(get_client().model_info)
example, run = open_prompt_example("guidance-example")

g = run.request.guidance_scale
THUMBNAIL_PX = 256  # the row's pictures are drawn at least this wide (Shapes paints 64 px)


def noise_frame(index: int, step: Step) -> PlayerFrame:
    u, c, guided = step.noise
    # u, c and the guided prediction share one grey scale, so their sizes compare; c - u has its own (it is small).
    limit = float(max(np.abs(u).max(), np.abs(c).max(), np.abs(guided).max()))
    return PlayerFrame(
        _("step {step} of {total}").format(step=index, total=len(run.steps)),
        (grey(u[0], limit), grey(c[0], limit), diverging(c[0] - u[0]), grey(guided[0], limit), guess_picture(step)),
        note=_(
            "u, c and the guided prediction are drawn on one grey scale (±{limit}); c − u on its own, red positive, "
            "blue negative. At this step the prompt's push, c − u, averages {push} per number; guidance multiplies "
            "it by {g}."
        ).format(limit=number(limit, digits=2), push=number(float(np.abs(c - u).mean()), digits=3), g=number(g)),
    )


# The player sends back the step the student stops on (the chart below marks it); steps count from 1 here.
frames = [noise_frame(index, frame) for index, frame in enumerate(run.steps, start=1)]
panels = [_("u: unconditional (channel 0)"), _("c: conditional (channel 0)"), _("c − u: what the prompt adds"),
          _("u + {g}·(c − u): guided").format(g=number(g)),
          _("where this step leads: {panel}").format(panel=_(guess_panel(run)))]  # fmt: skip
step = 1 + play(
    frames, panels, key="guidance-player", start=max(1, len(run.steps) // 4) - 1, report=True, width=150,
    prompt=run.request.prompt,
)  # fmt: skip
push = pd.DataFrame(
    [
        {
            "step": index,
            "value": float(np.abs(frame.noise[1] - frame.noise[0]).mean()),
            "series": _("the prompt's push, c − u"),
        }
        for index, frame in enumerate(run.steps, start=1)
    ]
)
st.markdown(
    _("**The prompt's push at every step** (mean size of c − u per number). The dashed line is the step above.")
)
st.vega_lite_chart(per_step(push, step, _("mean |c − u|")), width="stretch")

st.subheader(_("The same prompt at different guidance scales"))
same = where(
    examples("prompt-pairs"), seed=example.label("seed"), pair=example.label("pair"), side=example.label("side")
)
runs = [
    (
        float(item.label("guidance_scale")),
        _("g = {g}").format(g=number(float(item.label("guidance_scale")))),
        guarded(lambda item=item: load(item.request, lesson_entry=item.id)),
    )
    for item in same
]
row = st.container()  # drawn once the student's own run, if any, has its place in it
# What a much higher g did, measured on the pictures of the row (the catalog's, not the student's).
pictures = {g_value: result.image for g_value, _caption, result in runs if result is not None}
if len(pictures) >= 2:
    high = max(pictures)
    low = max((g_value for g_value in pictures if 1 < g_value < high), default=min(pictures))
    measured = high_guidance_sentence((low, pictures[low]), (high, pictures[high]))
    if 0.0 in pictures and low != 0.0:
        measured += " " + _("For comparison, g = 0 and g = {g} differ by {levels}.").format(
            g=number(low), levels=number(mean_difference(pictures[0.0], pictures[low]), digits=1)
        )
    st.markdown(measured)
reported = _(
    "Reported for Stable Diffusion and models like it, not measured here: very high guidance tends to give "
    "over-saturated, unnatural colours (Saharia et al. 2022, the Imagen paper, section 2.3). The usual g on Stable "
    "Diffusion is {usual_low} to {usual_high}."
).format(usual_low=number(7), usual_high=number(7.5))
if info:
    reported += " " + _("The model on this server starts the Playground at g = {g}.").format(
        g=number(info.default_guidance_scale)
    )
st.caption(reported)
st.info(
    _(
        "In diffusers' own pipeline, g = 0 and g = 1 both give the conditional image: it skips guidance for g ≤ 1. "
        "Here the formula is applied at every g, so g = 0 really is the unconditional image."
    ),
    icon=":material/info:",
)

st.subheader(_("Try it yourself"))
with st.form("live-guidance"):
    prompt = st.text_input(_("Prompt"), run.request.prompt, max_chars=1000)
    scale = st.slider(_("Guidance scale g"), 0.0, 20.0, 3.0, 0.5)
    negative = st.text_input(_("Negative prompt (what to push away from)"), "")
    go = st.form_submit_button(_("Generate"))
if go:
    request = pb.GenerateRequest()
    request.CopyFrom(run.request)
    request.prompt = prompt
    request.guidance_scale = scale
    request.negative_prompt = negative
    mine = guarded(lambda: load(request, planned=N_("your picture")))  # its status says what is happening
    if mine is not None:  # kept, so the row still shows it when the student moves the step
        st.session_state.guidance_mine = request.SerializeToString()
elif "guidance_mine" in st.session_state:
    request = pb.GenerateRequest.FromString(st.session_state.guidance_mine)
    mine = guarded(lambda: load(request))
else:
    mine = None
if mine is not None:
    words = [_("yours: g = {g}").format(g=number(request.guidance_scale))]
    if request.prompt != run.request.prompt:
        words.append(f"“{plain(request.prompt)}”")
    if request.negative_prompt:
        words.append(_("negative prompt “{prompt}”").format(prompt=plain(request.negative_prompt)))
    runs.append((request.guidance_scale, ", ".join(words), mine))
    st.caption(
        _("Your picture stands in the row above, in order of g (g = {g}).").format(g=number(request.guidance_scale))
    )

# The row in order of g: the student's own run stands where its g belongs.
runs.sort(key=lambda shown: shown[0])
with row:
    for column, (_scale, caption, result) in zip(st.columns(max(1, len(runs))), runs, strict=False):
        if result is not None:  # small pictures drawn larger, pixels kept sharp, so a student can see them
            picture = result.image if result.image.shape[1] >= THUMBNAIL_PX else enlarge(result.image, THUMBNAIL_PX)
            column.image(picture, caption=caption, width="stretch", alt=alt_text(
                _("the final picture"), result.request.prompt,
                _("guidance scale g = {g}").format(g=number(result.request.guidance_scale)),
                _("negative prompt “{prompt}”").format(prompt=result.request.negative_prompt)
                if result.request.negative_prompt else "",
            ))  # fmt: skip
