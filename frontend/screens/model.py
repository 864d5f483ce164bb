"""The model itself: its real sizes beside Stable Diffusion 1.5's, and what it was trained on."""

import pandas as pd
import streamlit as st

from frontend.client import get_client
from frontend.drawing.views import guarded

# Stable Diffusion 1.5's published sizes, for comparison (a Shapes classroom has no SD to ask).
SD15 = {
    "picture": "512 × 512",
    "latent": "4 × 64 × 64",
    "text encoder": "12 layers, vectors of 768 numbers",
    "text encoder parameters": "about 123 million",
    "UNet channels": "320, 640, 1280, 1280",
    "UNet parameters": "about 860 million",
    "VAE parameters": "about 84 million",
}


# Shapes' scheduler config beside SD 1.5's (runwayml/stable-diffusion-v1-5, scheduler/scheduler_config.json):
# the same betas and training steps, but Shapes pins timestep_spacing "leading" where SD 1.5 names none
# (diffusers then uses "linspace" for Euler and LMS). The numbers are diffusers' own for 50 steps, checked
# against both configs by tests/frontend/test_measured_claims.py.
SHAPES_SCHEDULE = (
    "Its noise schedule is Stable Diffusion 1.5's: the same 1,000 training noise levels, with the same amounts of "
    "noise. Its scheduler spaces the levels a run visits differently, though: whole levels, every 20th from "
    "t = 981 to t = 1 at 50 steps (diffusers' \"leading\" spacing), where SD 1.5's settings give 50 levels from "
    't = 999 to t = 0, most of them between two whole levels ("linspace"). So Euler at 50 steps starts here at '
    "σ = 13.12, and on Stable Diffusion 1.5 at σ = 14.61."
)


def millions(count: int) -> str:
    return f"{count / 1e6:.1f} million" if count >= 1e6 else f"{count:,}"


info = guarded(get_client().model_info)
if info is None:
    st.stop()
name = info.model_display_name or info.model_id
st.title(f"The model: {name}")

factor = info.vae_downsample_factor
latent = f"{info.latent_channels} × {info.default_height // factor} × {info.default_width // factor}"
ours = {
    "picture": f"{info.default_width} × {info.default_height}",
    "latent": latent,
    "text encoder": f"{info.text_encoder_layers} layers, vectors of {info.text_hidden_size} numbers",
    "text encoder parameters": millions(info.text_encoder_parameters),
    "UNet channels": ", ".join(str(c) for c in info.unet_block_out_channels),
    "UNet parameters": millions(info.unet_parameters),
    "VAE parameters": millions(info.vae_parameters),
}
if info.model_family == "shapes":
    st.markdown(
        "This is **our own** small model, built exactly like Stable Diffusion (the same tokenizer with "
        f"{info.tokenizer_vocab_size:,} pieces and {info.text_max_length} positions, a text encoder, a UNet with "
        "cross-attention, a VAE), only much smaller, so that it paints a picture in a couple of seconds on an "
        "ordinary computer, with no graphics card. It was trained here, from scratch."
    )
    st.markdown(SHAPES_SCHEDULE)
    st.subheader("What it learned from")
    st.text(info.model_description)
    st.markdown(
        "It predicts noise, step by step, like any diffusion model: nothing is looked up or pasted from its "
        "training pictures. A word it never read in a caption (*dog*, *sunset*) means nothing to it."
    )
    if info.held_out_pairs:
        st.markdown(
            "**Never seen together:** "
            + ", ".join(f"*{pair}*" for pair in info.held_out_pairs)
            + ". Try one in the Playground: if the picture is right, the model has combined a colour and a "
            "shape it only ever saw apart."
        )
    table = pd.DataFrame({name: ours, "Stable Diffusion 1.5": SD15})
else:
    table = pd.DataFrame({name: ours})
st.subheader("Its numbers")
st.table(table)
st.caption(
    f"Every number in the lessons comes from the model that is running: {info.model_id} on {info.device} "
    f"({info.dtype})."
)
