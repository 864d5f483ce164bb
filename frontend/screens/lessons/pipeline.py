"""Lesson 1: the whole pipeline, text encoder -> denoising loop -> VAE decoder, on one live run."""

import textwrap

import pandas as pd
import streamlit as st

from frontend.client import get_client
from frontend.drawing.diagram import Arrow, Box, Row, show
from frontend.drawing.look import alt_text
from frontend.drawing.views import PREVIEW_NOTE, enlarge, guarded, plain
from frontend.language import _, ngettext, number
from frontend.material.examples import open_prompt_example
from frontend.material.labels import scheduler_names
from frontend.player import decoder_of, guess_panel, guess_picture
from services.common.api import pb

st.title(_("1. The whole pipeline"))
st.markdown(
    _(
        "A text-to-image model works in three stages. Your prompt becomes numbers, a loop turns random "
        "noise into a small *latent* picture guided by those numbers, and a decoder turns the latent into "
        "the image you see."
    )
)

info = guarded(get_client().model_info)
if info is None:
    st.stop()
example, run = open_prompt_example("pipeline-example")

request = run.request
latent_h, latent_w = request.height // info.vae_downsample_factor, request.width // info.vae_downsample_factor
latent_numbers = info.latent_channels * latent_h * latent_w
image_numbers = request.height * request.width * 3

names = scheduler_names(info)
scheduler = names.get(request.scheduler or info.default_scheduler, request.scheduler or info.default_scheduler)
pieces = [t.text for t in run.prompt_tokens.tokens if t.kind == pb.TOKEN_KIND_PROMPT]
vectors = f"{info.text_max_length}×{info.text_hidden_size}"
latent_shape = f"{info.latent_channels}×{latent_h}×{latent_w}"
g = number(request.guidance_scale)
negative = bool(request.negative_prompt)  # the second pass of the UNet reads the negative prompt, else the empty one
scaling = f"{info.vae_scaling_factor:g}"  # the model's constant, every digit (0.18215)
scaling = number(info.vae_scaling_factor, digits=len(scaling.partition(".")[2]) if "e" not in scaling else None)


# The labels of the diagram, in the student's language; every number in them is this run's.
labels = {
    "prompt": "\n".join(textwrap.wrap(f"“{plain(request.prompt, 'text')}”", 32)),  # a long prompt on a few lines
    "tokenizer": ngettext(
        "tokenizer\n{count} piece → {ids} token ids", "tokenizer\n{count} pieces → {ids} token ids", len(pieces)
    ).format(count=len(pieces), ids=info.text_max_length),
    "encoder": ngettext(
        "text encoder\n{count} transformer layer", "text encoder\n{count} transformer layers", info.text_encoder_layers
    ).format(count=info.text_encoder_layers),
    "noise": _("noise from seed {seed}\n{shape}").format(seed=request.seed, shape=latent_shape),
    "unet": (
        _("UNet, twice a step\nwith the prompt: c\nwith the negative prompt: u")
        if negative
        else _("UNet, twice a step\nwith the prompt: c\nwith the empty prompt: u")
    ),
    "guidance": _("guidance\nu + {g}·(c − u)").format(g=g),
    "step": _("scheduler ({name})\none step to a cleaner latent").format(name=scheduler),
    "decoder": _("VAE decoder\n{latent} → {width}×{height}×3").format(
        latent=latent_shape, width=request.width, height=request.height
    ),
    "image": _("the image\n{width}×{height}").format(width=request.width, height=request.height),
}


NOTES = ("prompt", "image")  # what goes in and what comes out: drawn as notes, beside the stages' bands


def boxes(fill: str, *names: str) -> tuple[Box, ...]:
    """One stage's boxes of the diagram, with their labels."""
    return tuple(Box(name, labels[name], "#ffffff" if name in NOTES else fill, name in NOTES) for name in names)


# One row per stage, so the diagram stays readable at the page's width; drawn here, painted by the browser.
stages = [
    Row(_("① Text encoder"), boxes("#dbeafe", "prompt", "tokenizer", "encoder"), "#eff6ff", "#60a5fa"),
    Row(
        ngettext("② Denoising loop: {count} step", "② Denoising loop: {count} steps", run.total_steps).format(
            count=run.total_steps
        ),
        boxes("#fef3c7", "noise", "unet", "guidance", "step"),
        "#fffbeb",
        "#f59e0b",
    ),
    Row(_("③ VAE decoder"), boxes("#dcfce7", "decoder", "image"), "#f0fdf4", "#22c55e"),
]
arrows = [
    Arrow("prompt", "tokenizer"),
    Arrow("tokenizer", "encoder", _("{count} ids").format(count=info.text_max_length)),
    Arrow(
        "encoder",
        "unet",
        (
            _("2 × {vectors} vectors:\nprompt, negative prompt")
            if negative
            else _("2 × {vectors} vectors:\nprompt, empty prompt")
        ).format(vectors=vectors),
    ),
    Arrow("noise", "unet", _("latent {shape}").format(shape=latent_shape)),
    Arrow("unet", "guidance", "c, u"),
    Arrow("guidance", "step", _("guided noise")),
    Arrow("step", "unet", _("latent, next step"), back=True),
    Arrow("step", "decoder", _("last latent")),
    Arrow("decoder", "image"),
]
# Its text alternative: what it is, then each stage's boxes in the order the data goes through them.
described = " ".join(
    f"{stage.title}. {'; '.join(' '.join(box.text.split()) for box in stage.boxes)}." for stage in stages
)
show(
    stages,
    arrows,
    _(
        "Diagram of the pipeline, top to bottom, with this run's numbers. The scheduler's latent goes back to the "
        "UNet for each next step; the last latent goes to the VAE decoder."
    )
    + " "
    + described,
)
st.caption(_("Open each stage below for this run's real numbers."))

text_tab, loop_tab, decoder_tab = st.tabs([_("① Text encoder"), _("② Denoising loop"), _("③ VAE decoder")])
with text_tab:
    text_sentence = (
        _(
            "**{prompt}**: CLIP's tokenizer splits it into {count} pieces; with a start token, an end token and "
            "padding, the window always holds **{window} tokens**. The text encoder ({layers} transformer layers) "
            "turns them into {window} vectors of **{size} numbers** each: a {vectors} matrix. The negative prompt "
            "goes through the same encoder, so **two** {vectors} matrices reach the UNet at every step of the loop: "
            "the prompt's and the negative prompt's."
        )
        if negative
        else _(
            "**{prompt}**: CLIP's tokenizer splits it into {count} pieces; with a start token, an end token and "
            "padding, the window always holds **{window} tokens**. The text encoder ({layers} transformer layers) "
            "turns them into {window} vectors of **{size} numbers** each: a {vectors} matrix. The empty prompt "
            "goes through the same encoder, so **two** {vectors} matrices reach the UNet at every step of the loop: "
            "the prompt's and the empty prompt's."
        )
    )
    st.markdown(
        text_sentence.format(
            prompt=plain(request.prompt),
            count=len(pieces),
            window=info.text_max_length,
            layers=info.text_encoder_layers,
            size=info.text_hidden_size,
            vectors=vectors,
        )
    )
    end = next(t.position for t in run.prompt_tokens.tokens if t.kind == pb.TOKEN_KIND_END)
    position, piece, token_id = _("position"), _("piece"), _("token id")
    st.dataframe(
        pd.DataFrame(
            [{position: t.position, piece: t.piece, token_id: t.id} for t in run.prompt_tokens.tokens[: end + 1]]
        ),
        hide_index=True,
    )
    st.caption(
        _("Positions {first} to {last}: padding, the end token repeated.").format(
            first=end + 1, last=info.text_max_length - 1
        )
    )

with loop_tab:
    loop_sentence = (
        _(
            "{steps} steps with the **{scheduler}** scheduler, guidance g = {g}, seed {seed}. At each one the "
            "**UNet** looks at the noisy latent, the noise level and the text vectors (through cross-attention) and "
            "predicts the noise in the latent, once with the prompt (c) and once with the negative prompt (u); "
            "**guidance** mixes the two, and the **scheduler** uses the result to take one step toward a cleaner "
            "latent."
        )
        if negative
        else _(
            "{steps} steps with the **{scheduler}** scheduler, guidance g = {g}, seed {seed}. At each one the "
            "**UNet** looks at the noisy latent, the noise level and the text vectors (through cross-attention) and "
            "predicts the noise in the latent, once with the prompt (c) and once with the empty prompt (u); "
            "**guidance** mixes the two, and the **scheduler** uses the result to take one step toward a cleaner "
            "latent."
        )
    )
    st.markdown(loop_sentence.format(steps=run.total_steps, scheduler=plain(scheduler), g=g, seed=request.seed))
    # A few steps spread over the run, on one row: the latent as it clears.
    shown = sorted({round(i * (len(run.steps) - 1) / 4) for i in range(5)})
    columns = st.columns(len(shown) + 1)
    sketch = _("the noisy latent as a rough colour sketch")
    columns[0].image(enlarge(run.initial_preview, 96), caption=_("start: noise"),
                     alt=alt_text(sketch, request.prompt, _("the starting noise")))  # fmt: skip
    for column, index in zip(columns[1:], shown, strict=True):
        at_step = _("step {step} of {total}").format(step=index + 1, total=len(run.steps))
        column.image(enlarge(run.steps[index].latent_preview, 96), caption=_("step {step}").format(step=index + 1),
                     alt=alt_text(sketch, request.prompt, at_step))  # fmt: skip
    st.caption(_(PREVIEW_NOTE))
    if decoder_of(run):  # the model's guess at the same steps, decoded: a picture at every step
        panel = _(guess_panel(run))
        columns = st.columns(len(shown) + 1)
        columns[0].markdown(f"**{panel}**")
        for column, index in zip(columns[1:], shown, strict=True):
            column.image(
                enlarge(guess_picture(run.steps[index]), 96),
                caption=_("step {step}").format(step=index + 1),
                alt=alt_text(
                    panel, request.prompt, _("step {step} of {total}").format(step=index + 1, total=len(run.steps))
                ),
            )
    step_column, level_column, seconds_column = _("step"), _("noise level t"), _("seconds")
    st.dataframe(
        pd.DataFrame(
            [
                {
                    step_column: s.index + 1,
                    level_column: s.timestep,
                    **({"σ": s.sigma} if s.sigma is not None else {}),
                    seconds_column: round(s.seconds, 4),
                }
                for s in run.steps
            ]
        ),
        hide_index=True,
        height=220,
    )

with decoder_tab:
    left, right = st.columns([1, 3])
    left.image(
        run.image,
        caption=_("{width}×{height} image").format(width=request.width, height=request.height),
        alt=alt_text(
            _("the final image"),
            request.prompt,
            _("{width} × {height} pixels").format(width=request.width, height=request.height),
        ),
    )
    right.markdown(
        _(
            "The final latent is {latent} = **{latent_numbers}** numbers; the image is {width}×{height}×3 = "
            "**{image_numbers}**: the loop works on **{times}× fewer** numbers than the picture has. The decoder "
            "first divides the latent by the VAE scaling factor ({scaling}), then turns it into pixels."
        ).format(
            latent=latent_shape,
            latent_numbers=number(latent_numbers),
            width=request.width,
            height=request.height,
            image_numbers=number(image_numbers),
            times=number(image_numbers // latent_numbers),
            scaling=scaling,
        )
    )

with st.expander(_("What flows between the stages")):
    flows = (
        _(
            "- Text encoder → UNet: two {vectors} matrices, the prompt's and the negative prompt's, the same at "
            "every step.\n"
            "- Scheduler → UNet → scheduler: the latent, {latent}, once per step.\n"
            "- Loop → VAE decoder: the last latent, divided by the VAE scaling factor ({scaling})."
        )
        if negative
        else _(
            "- Text encoder → UNet: two {vectors} matrices, the prompt's and the empty prompt's, the same at "
            "every step.\n"
            "- Scheduler → UNet → scheduler: the latent, {latent}, once per step.\n"
            "- Loop → VAE decoder: the last latent, divided by the VAE scaling factor ({scaling})."
        )
    )
    took = (
        _("This run took {seconds} s of model time and was served from the lesson cache.")
        if run.cached
        else _("This run took {seconds} s of model time.")
    )
    st.markdown(
        flows.format(vectors=vectors, latent=latent_shape, scaling=scaling)
        + "\n- "
        + took.format(seconds=number(run.total_seconds, digits=1))
    )
