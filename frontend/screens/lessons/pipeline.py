"""Lesson 1: the whole pipeline, text encoder -> denoising loop -> VAE decoder, on one live run."""

import pandas as pd
import streamlit as st

from frontend.client import get_client
from frontend.drawing.look import alt_text
from frontend.drawing.views import PREVIEW_NOTE, enlarge, guarded, plain
from frontend.material.examples import open_prompt_example
from frontend.material.labels import scheduler_names
from frontend.player import decoder_of, guess_panel, guess_picture
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

names = scheduler_names(info)
scheduler = names.get(request.scheduler or info.default_scheduler, request.scheduler or info.default_scheduler)
pieces = [t.text for t in run.prompt_tokens.tokens if t.kind == pb.TOKEN_KIND_PROMPT]
vectors = f"{info.text_max_length}×{info.text_hidden_size}"
latent_shape = f"{info.latent_channels}×{latent_h}×{latent_w}"
g = request.guidance_scale
unconditional = "the negative prompt" if request.negative_prompt else "the empty prompt"


def _dot(text: str) -> str:
    """Text safe inside a quoted graphviz label."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


# The diagram is drawn by graphviz in the browser, from this description: every number in it is this run's.
diagram = f"""
digraph pipeline {{
  rankdir=TB; newrank=true; bgcolor="transparent"; nodesep=0.35; ranksep=0.45;
  node [shape=box, style="rounded,filled", fontname="sans-serif", fontsize=13, margin="0.15,0.08"];
  edge [fontname="sans-serif", fontsize=11, color="#555555"];
  prompt [label="“{_dot(request.prompt)}”", shape=note, fillcolor="#ffffff"];
  subgraph cluster_text {{
    label="① Text encoder"; fontname="sans-serif bold"; fontsize=14; labeljust=l;
    style="rounded,filled"; fillcolor="#eff6ff"; color="#93c5fd";
    tokenizer [label="tokenizer\\n{len(pieces)} pieces → {info.text_max_length} token ids", fillcolor="#dbeafe"];
    encoder [label="text encoder\\n{info.text_encoder_layers} transformer layers", fillcolor="#dbeafe"];
  }}
  subgraph cluster_loop {{
    label="② Denoising loop: {run.total_steps} steps"; fontname="sans-serif bold"; fontsize=14; labeljust=l;
    style="rounded,filled"; fillcolor="#fffbeb"; color="#fcd34d";
    noise [label="noise from seed {request.seed}\\n{latent_shape}", fillcolor="#fef3c7"];
    unet [label="UNet, twice a step\\nwith the prompt: c\\nwith {unconditional}: u", fillcolor="#fef3c7"];
    guidance [label="guidance\\nu + {g:g}·(c − u)", fillcolor="#fef3c7"];
    step [label="scheduler ({_dot(scheduler)})\\none step to a cleaner latent", fillcolor="#fef3c7"];
  }}
  subgraph cluster_decoder {{
    label="③ VAE decoder"; fontname="sans-serif bold"; fontsize=14; labeljust=l;
    style="rounded,filled"; fillcolor="#f0fdf4"; color="#86efac";
    decoder [label="VAE decoder\\n{latent_shape} → {request.width}×{request.height}×3", fillcolor="#dcfce7"];
  }}
  image [label="the image\\n{request.width}×{request.height}", shape=note, fillcolor="#ffffff"];
  // One row per stage, so the diagram stays readable at the page's width.
  {{ rank=same; prompt; tokenizer; encoder; }}
  {{ rank=same; noise; unet; guidance; step; }}
  {{ rank=same; decoder; image; }}
  prompt -> tokenizer;
  tokenizer -> encoder [label="{info.text_max_length} ids"];
  encoder -> unet [label="2 × {vectors} vectors:\\nprompt, {unconditional.removeprefix("the ")}"];
  noise -> unet [label="latent {latent_shape}"];
  unet -> guidance [label="c, u"];
  guidance -> step [label="guided noise"];
  step -> unet [label="latent, next step", style=dashed, constraint=false];
  step -> decoder [label="last latent"];
  decoder -> image;
}}
"""
st.graphviz_chart(diagram, width="stretch")
st.caption("Open each stage below for this run's real numbers.")

text_tab, loop_tab, decoder_tab = st.tabs(["① Text encoder", "② Denoising loop", "③ VAE decoder"])
with text_tab:
    st.markdown(
        f"**{plain(request.prompt)}**: CLIP's tokenizer splits it into {len(pieces)} pieces; with a start token, an "
        f"end token and padding, the window always holds **{info.text_max_length} tokens**. The text encoder "
        f"({info.text_encoder_layers} transformer layers) turns them into {info.text_max_length} vectors of "
        f"**{info.text_hidden_size} numbers** each: a {vectors} matrix. {unconditional.capitalize()} goes through "
        f"the same encoder, so **two** {vectors} matrices reach the UNet at every step of the loop: the prompt's "
        f"and {unconditional}'s."
    )
    end = next(t.position for t in run.prompt_tokens.tokens if t.kind == pb.TOKEN_KIND_END)
    st.dataframe(
        pd.DataFrame(
            [{"position": t.position, "piece": t.piece, "token id": t.id} for t in run.prompt_tokens.tokens[: end + 1]]
        ),
        hide_index=True,
    )
    st.caption(f"Positions {end + 1} to {info.text_max_length - 1}: padding, the end token repeated.")

with loop_tab:
    st.markdown(
        f"{run.total_steps} steps with the **{plain(scheduler)}** scheduler, guidance g = {g:g}, seed {request.seed}. "
        "At each one the **UNet** looks at the noisy latent, the noise level and the text vectors (through "
        "cross-attention) and predicts the noise in the latent, once with the prompt (c) and once with "
        f"{unconditional} (u); **guidance** mixes the two, and the **scheduler** uses the result to take one step "
        "toward a cleaner latent."
    )
    # A few steps spread over the run, on one row: the latent as it clears.
    shown = sorted({round(i * (len(run.steps) - 1) / 4) for i in range(5)})
    columns = st.columns(len(shown) + 1)
    sketch = "the noisy latent as a rough colour sketch"
    columns[0].image(enlarge(run.initial_preview, 96), caption="start: noise",
                     alt=alt_text(sketch, request.prompt, "the starting noise"))  # fmt: skip
    for column, index in zip(columns[1:], shown, strict=True):
        column.image(enlarge(run.steps[index].latent_preview, 96), caption=f"step {index + 1}",
                     alt=alt_text(sketch, request.prompt, f"step {index + 1} of {len(run.steps)}"))  # fmt: skip
    st.caption(PREVIEW_NOTE)
    if decoder_of(run):  # the model's guess at the same steps, decoded: a picture at every step
        columns = st.columns(len(shown) + 1)
        columns[0].markdown(f"**{guess_panel(run)}**")
        for column, index in zip(columns[1:], shown, strict=True):
            column.image(
                enlarge(guess_picture(run.steps[index]), 96),
                caption=f"step {index + 1}",
                alt=alt_text(guess_panel(run), request.prompt, f"step {index + 1} of {len(run.steps)}"),
            )
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "step": s.index + 1,
                    "noise level t": s.timestep,
                    **({"σ": s.sigma} if s.sigma is not None else {}),
                    "seconds": round(s.seconds, 4),
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
        caption=f"{request.width}×{request.height} image",
        alt=alt_text("the final image", request.prompt, f"{request.width} × {request.height} pixels"),
    )
    right.markdown(
        f"The final latent is {latent_shape} = **{latent_numbers:,}** numbers; the image is "
        f"{request.width}×{request.height}×3 = **{image_numbers:,}**: the loop works on "
        f"**{image_numbers // latent_numbers}× fewer** numbers than the picture has. The decoder first divides the "
        f"latent by the VAE scaling factor ({info.vae_scaling_factor:g}), then turns it into pixels."
    )

with st.expander("What flows between the stages"):
    st.markdown(
        f"- Text encoder → UNet: two {vectors} matrices, the prompt's and {unconditional}'s, the same at every "
        "step.\n"
        f"- Scheduler → UNet → scheduler: the latent, {info.latent_channels}×{latent_h}×{latent_w}, once per step.\n"
        f"- Loop → VAE decoder: the last latent, divided by the VAE scaling factor "
        f"({info.vae_scaling_factor:g}).\n"
        f"- This run took {run.total_seconds:.1f} s of model time"
        + (" and was served from the lesson cache." if run.cached else ".")
    )
