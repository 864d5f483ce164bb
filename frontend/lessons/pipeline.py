"""Lesson 1: the whole pipeline, text encoder -> denoising loop -> VAE decoder, on one live run."""

import streamlit as st

from frontend.catalog import open_prompt_example
from frontend.client import get_client
from frontend.views import PREVIEW_NOTE, enlarge, guarded, plain
from services.common.api import pb

st.title("1. The whole pipeline")
st.markdown(
    "A text-to-image model works in three stages. Your prompt becomes numbers, a loop turns random "
    "noise into a small *latent* picture guided by those numbers, and a decoder turns the latent into "
    "the image you see."
)

info = guarded(get_client().model_info)
if info is None:
    st.stop()
example, run = open_prompt_example("pipeline-example")

request = run.request
latent_h, latent_w = request.height // info.vae_downsample_factor, request.width // info.vae_downsample_factor
latent_numbers = info.latent_channels * latent_h * latent_w
image_numbers = request.height * request.width * 3

text, loop, decoder = st.columns(3)
with text:
    st.subheader("① Text encoder")
    pieces = [t.text for t in run.prompt_tokens.tokens if t.kind == pb.TOKEN_KIND_PROMPT]
    st.markdown(f"**{plain(request.prompt)}**")
    st.markdown(
        f"CLIP's tokenizer splits it into {len(pieces)} pieces; the text encoder "
        f"({info.text_encoder_layers} transformer layers) turns the window of **{info.text_max_length} tokens** "
        f"into {info.text_max_length} vectors of **{info.text_hidden_size} numbers** each."
    )
with loop:
    st.subheader("② Denoising loop")
    middle = run.steps[len(run.steps) // 2]
    st.image(
        [
            enlarge(run.initial_preview, 120),
            enlarge(middle.latent_preview, 120),
            enlarge(run.steps[-1].latent_preview, 120),
        ],
        caption=["start: pure noise", f"step {middle.index + 1}", f"step {len(run.steps)}"],
    )
    st.markdown(
        f"{run.total_steps} steps. At each one the **UNet** looks at the noisy latent, the noise level and the "
        "text vectors (through cross-attention) and predicts the noise in the latent; the **scheduler** "
        "uses that prediction to take one step toward a cleaner latent."
    )
    st.caption(PREVIEW_NOTE)
with decoder:
    st.subheader("③ VAE decoder")
    st.image(run.image, caption=f"{request.width}×{request.height} image")
    st.markdown(
        f"The final latent is {info.latent_channels}×{latent_h}×{latent_w} = **{latent_numbers:,}** numbers; "
        f"the image is {request.width}×{request.height}×3 = **{image_numbers:,}**: "
        f"the loop works on **{image_numbers // latent_numbers}× fewer** numbers than the picture has."
    )

with st.expander("What flows between the stages"):
    st.markdown(
        f"- Text encoder → UNet: a {info.text_max_length}×{info.text_hidden_size} matrix, the same at every step.\n"
        f"- Scheduler → UNet → scheduler: the latent, {info.latent_channels}×{latent_h}×{latent_w}, once per step.\n"
        f"- Loop → VAE decoder: the last latent, divided by the VAE scaling factor "
        f"({info.vae_scaling_factor:g}).\n"
        f"- This run took {run.total_seconds:.1f} s of model time"
        + (" and was served from the lesson cache." if run.cached else ".")
    )
