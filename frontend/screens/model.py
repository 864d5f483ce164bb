"""The model itself: its real sizes beside Stable Diffusion 1.5's, and what it was trained on."""

import pandas as pd
import streamlit as st

from frontend.client import get_client
from frontend.drawing.views import guarded
from frontend.language import N_, _, number

# The table's rows (English; `_` translates them where the table is drawn).
ROWS = (
    N_("picture"), N_("latent"), N_("text encoder"), N_("text encoder parameters"), N_("UNet channels"),
    N_("UNet parameters"), N_("VAE parameters"),
)  # fmt: skip
LAYERS = N_("{layers} layers, vectors of {size} numbers")
ABOUT_MILLION = N_("about {count} million")
MILLION = N_("{count} million")


def sd15() -> list[str]:
    """Stable Diffusion 1.5's published sizes, for comparison (a Shapes classroom has no SD to ask), in ROWS' order."""
    return [
        "512 × 512", "4 × 64 × 64", _(LAYERS).format(layers=12, size=number(768)),
        _(ABOUT_MILLION).format(count=123), "320, 640, 1280, 1280", _(ABOUT_MILLION).format(count=860),
        _(ABOUT_MILLION).format(count=84),
    ]  # fmt: skip


# Shapes' scheduler config beside SD 1.5's (runwayml/stable-diffusion-v1-5, scheduler/scheduler_config.json):
# the same betas and training steps, but Shapes pins timestep_spacing "leading" where SD 1.5 names none
# (diffusers then uses "linspace" for Euler and LMS). The numbers are diffusers' own for 50 steps, checked
# against both configs by tests/frontend/test_measured_claims.py, which reads it as a plain string: `_` translates
# it where it is shown, and frontend/locales/update.py lists it for the catalogs (SHOWN_CONSTANTS).
SHAPES_SCHEDULE = (
    "Its noise schedule is Stable Diffusion 1.5's: the same 1,000 training noise levels, with the same amounts of "
    "noise. Its scheduler spaces the levels a run visits differently, though: whole levels, every 20th from "
    "t = 981 to t = 1 at 50 steps (diffusers' \"leading\" spacing), where SD 1.5's settings give 50 levels from "
    't = 999 to t = 0, most of them between two whole levels ("linspace"). So Euler at 50 steps starts here at '
    "σ = 13.12, and on Stable Diffusion 1.5 at σ = 14.61."
)


def millions(count: int) -> str:
    return _(MILLION).format(count=number(count / 1e6, digits=1)) if count >= 1e6 else number(count)


info = guarded(get_client().model_info)
if info is None:
    st.stop()
name = info.model_display_name or info.model_id
st.title(_("The model: {name}").format(name=name))

factor = info.vae_downsample_factor
latent = f"{info.latent_channels} × {info.default_height // factor} × {info.default_width // factor}"
ours = [
    f"{info.default_width} × {info.default_height}",
    latent,
    _(LAYERS).format(layers=info.text_encoder_layers, size=number(info.text_hidden_size)),
    millions(info.text_encoder_parameters),
    ", ".join(str(c) for c in info.unet_block_out_channels),
    millions(info.unet_parameters),
    millions(info.vae_parameters),
]
rows = [_(row) for row in ROWS]
if info.model_family == "shapes":
    st.markdown(
        _(
            "This is **our own** small model, built exactly like Stable Diffusion (the same tokenizer with "
            "{pieces} pieces and {positions} positions, a text encoder, a UNet with cross-attention, a VAE), only "
            "much smaller, so that it paints a picture in a couple of seconds on an ordinary computer, with no "
            "graphics card. It was trained here, from scratch."
        ).format(pieces=number(info.tokenizer_vocab_size), positions=info.text_max_length)
    )
    st.markdown(_(SHAPES_SCHEDULE))
    st.subheader(_("What it learned from"))
    st.text(info.model_description)
    st.markdown(
        _(
            "It predicts noise, step by step, like any diffusion model: nothing is looked up or pasted from its "
            "training pictures. A word it never read in a caption (*dog*, *sunset*) means nothing to it."
        )
    )
    if info.held_out_pairs:
        pairs = ", ".join(f"*{pair}*" for pair in info.held_out_pairs)
        st.markdown(
            _(
                "**Never seen together:** {pairs}. Try one in the Playground: if the picture is right, the model "
                "has combined a colour and a shape it only ever saw apart."
            ).format(pairs=pairs)
        )
    table = pd.DataFrame({name: ours, "Stable Diffusion 1.5": sd15()}, index=rows)
else:
    table = pd.DataFrame({name: ours}, index=rows)
st.subheader(_("Its numbers"))
st.table(table)
st.caption(
    _("Every number in the lessons comes from the model that is running: {model_id} on {device} ({dtype}).").format(
        model_id=info.model_id, device=info.device, dtype=info.dtype
    )
)
