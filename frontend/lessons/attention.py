"""Lesson 7: which word paints where - each token's cross-attention map over the picture, step by step."""

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from frontend import trajectory
from frontend.catalog import examples
from frontend.player import PlayerFrame, guess_panel, guess_picture, play
from frontend.views import enlarge, guarded, plain
from services.common.api import pb

PROBES = ["latent_preview", "predicted_x0_preview", "cross_attention"]
SIZE = 256  # pixels on screen for each picture


def overlay(picture: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """A [h, w] map over an RGB picture: clear where the word is read least, warm where it is read most."""
    base = enlarge(picture, SIZE)
    low, high = float(heat.min()), float(heat.max())
    stretched = (heat - low) / (high - low) if high > low else np.zeros_like(heat)
    grid = Image.fromarray((stretched * 255).astype(np.uint8))
    level = np.asarray(grid.resize(base.shape[1::-1], Image.Resampling.BILINEAR), dtype=np.float32)[..., None] / 255
    warm = np.array([255, 40, 0], dtype=np.float32) * (1 - level) + np.array([255, 230, 0], dtype=np.float32) * level
    alpha = 0.75 * level
    return (base * (1 - alpha) + warm * alpha).astype(np.uint8)


st.title("7. Which word paints where")
st.markdown(
    "The UNet reads the prompt through **cross-attention**. In each cross-attention layer, every position of "
    "the latent (a query) asks the 77 text vectors (the keys) *which of you matters here?*: it scores each "
    "one, turns the scores into shares that add up to one (a softmax), and mixes the vectors' values by those "
    "shares. One token's shares over all positions form its **map**: where in the picture that word is read. "
    "The maps below are those of the prompt's branch, averaged over the layer's heads and over every "
    "cross-attention layer, each resized to the latent's grid (as DAAM does: Tang et al., 2023)."
)

source = st.radio("Prompt", ["A lesson example", "Your own prompt"], horizontal=True, key="attention-source")
if source == "A lesson example":
    items = examples("attention-maps")
    if not items:
        st.info("No attention examples are set up on this server: type your own prompt instead.")
        st.stop()
    example = st.selectbox(
        "Example", items, format_func=lambda e: f"{e.request.prompt} (seed {e.label('seed')})", key="attention-example"
    )
    run = guarded(lambda: trajectory.load(example.request, PROBES, lesson_entry=example.id))
else:
    with st.form("attention-own"):
        prompt = st.text_input("Your prompt", "a red circle on the left", max_chars=300)
        seed = st.number_input("Seed", 0, 2**32 - 1, 1)
        asked = st.form_submit_button("Draw it")
    if asked and prompt.strip():
        st.session_state["attention-request"] = pb.GenerateRequest(
            prompt=prompt, seed=int(seed), num_inference_steps=20
        ).SerializeToString()
    if "attention-request" not in st.session_state:
        st.stop()
    request = pb.GenerateRequest.FromString(st.session_state["attention-request"])
    run = guarded(lambda: trajectory.load(request, PROBES))
if run is None or run.prompt_tokens is None:
    st.stop()
if any(step.attention is None for step in run.steps):
    st.warning("This run was made without its attention maps; ask your teacher to render the lesson again.")
    st.stop()

# The maps keep the start token, the prompt's pieces and the end token (padding is left out).
tokens = [t for t in run.prompt_tokens.tokens if t.kind != pb.TOKEN_KIND_PADDING]
maps = np.stack([step.attention for step in run.steps]).astype(np.float32)  # [steps, tokens, h, w]
labels = [t.text.strip() or "∅" for t in tokens]
labels[0], labels[-1] = "‹start›", "‹end›"
pieces = list(range(1, len(tokens) - 1)) or [0]

st.markdown("**Choose a piece of the prompt** to see where the UNet reads it:")
chosen = st.pills("Piece", pieces, format_func=lambda i: labels[i], default=pieces[-1], key="attention-token")
chosen = pieces[-1] if chosen is None else chosen
word = labels[chosen]

total = len(run.steps)
frames = [
    PlayerFrame(
        f"step {k} of {total}",
        (overlay(run.image, maps[k - 1, chosen]), guess_picture(step)),
        step.timestep,
        step.sigma,
    )
    for k, step in enumerate(run.steps, start=1)
]
st.markdown(f"**Where «{plain(word)}» is read, step by step** (over the final picture), beside the model's guess:")
play(frames, [f"the map of «{word}»", guess_panel(run)], key="attention-player", width=SIZE)
st.caption(
    "Each map's colours run from its lowest share (clear) to its highest (yellow): compare places within one "
    "map, not how strong two maps are. Early steps are diffuse, while the picture is still noise; watch where "
    "the later ones settle."
)

left, right = st.columns(2)
left.image(overlay(run.image, maps[:, chosen].sum(axis=0)), caption=f"«{word}», summed over all {total} steps")
right.image(overlay(run.image, maps[:, -1].sum(axis=0)), caption="‹end›, the token closing the prompt, summed")
st.markdown(
    "The **end token** comes after every word, and the text encoder lets each position read the ones before "
    "it, so its vector sums up the whole prompt: its map often covers the whole subject."
)

# Each position's share of the attention: the kept tokens, and the padding that fills the window.
shares = maps.mean(axis=(0, 2, 3))  # mean over steps and positions: each token's share of the probability
table = pd.DataFrame({"token": [*labels, "padding (the rest)"], "share": [*shares, max(0.0, 1 - shares.sum())]})
st.markdown("**Who gets the attention** (each token's share of every position's attention, over all steps):")
st.bar_chart(table, x="token", y="share", sort=False)
st.markdown(
    f"The **start token** gets {shares[0]:.0%} here. It is the same in every prompt, so it carries no meaning "
    "of its own: in Stable Diffusion it soaks up much of the attention (a resting place for the softmax), and "
    "its map is usually left out when we ask where the words are. The padding positions hold "
    f"{max(0.0, 1 - shares.sum()):.0%}: copies of the end token, so they too carry the prompt's summary."
)

with st.expander("Each resolution on its own"):
    st.markdown(
        "The UNet attends at several sizes of its grid: fine layers place details, coarse ones the layout. "
        f"Here is «{plain(word)}» summed over the steps, at each size the model reads the text:"
    )
    resolutions = run.steps[0].attention_by_resolution
    for column, index in zip(st.columns(len(resolutions)), range(len(resolutions)), strict=True):
        layers, first = resolutions[index]
        heat = sum(step.attention_by_resolution[index][1][chosen].astype(np.float32) for step in run.steps)
        column.image(
            overlay(run.image, heat),
            caption=f"{first.shape[1]} x {first.shape[2]} grid, {layers} layer{'s' * (layers > 1)}",
        )
