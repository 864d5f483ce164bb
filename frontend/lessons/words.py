"""Lesson 2: words to numbers - CLIP's real tokens, the 77-token window, the embedding matrix."""

import html

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from frontend.client import get_client, student_id
from frontend.views import diverging, enlarge, guarded
from services.common.api import pb
from services.common.codecs import tensor_from_proto

KIND_STYLE = {
    pb.TOKEN_KIND_START: ("#dbeafe", "start"),
    pb.TOKEN_KIND_PROMPT: ("#fef3c7", "prompt"),
    pb.TOKEN_KIND_END: ("#dcfce7", "end"),
    pb.TOKEN_KIND_PADDING: ("#f3f4f6", "padding"),
}

st.title("2. Words to numbers")
st.markdown(
    "The model never sees words. A **tokenizer** cuts the prompt into pieces from a fixed vocabulary and "
    "gives each piece a number (its id); the **text encoder** then turns each position into a vector."
)

client = get_client()
prompt = st.text_input("Prompt", "a photo of an astronaut riding a horse", max_chars=1000)
tokens = guarded(lambda: client.tokenize(prompt, student_id()))
if tokens is None:
    st.stop()


def chip(token: pb.Token) -> str:
    colour, kind = KIND_STYLE[token.kind]
    title = html.escape(f"position {token.position}, id {token.id}, {kind}, piece {token.piece}")
    text = html.escape(token.text) or "∅"
    style = f"background:{colour};padding:2px 6px;margin:2px;border-radius:6px;display:inline-block"
    return f'<span title="{title}" style="{style}">{text}</span>'


end = next(t.position for t in tokens.tokens if t.kind == pb.TOKEN_KIND_END)
shown = tokens.tokens[: end + 3]
st.markdown(
    " ".join(chip(t) for t in shown) + f" … ({tokens.max_length - len(shown)} more padding)", unsafe_allow_html=True
)
st.markdown(
    f"Your prompt became **{tokens.prompt_token_count} pieces**. The window always holds exactly "
    f"**{tokens.max_length}**: a start token, the pieces, an end token, then padding (the end token repeated). "
    "CLIP lower-cases the text; `</w>` in a piece marks the end of a word, so one word can be several pieces."
)
if tokens.truncated:
    st.warning(
        f"Only {tokens.max_length - 2} pieces fit. The model never sees the rest: **{tokens.truncated_text}** "
        f"({len(tokens.truncated_tokens)} pieces were cut off, silently, as Stable Diffusion does).",
        icon=":material/content_cut:",
    )
with st.expander("Every token"):
    st.dataframe(
        pd.DataFrame(
            [
                {"position": t.position, "piece": t.piece, "id": t.id, "kind": KIND_STYLE[t.kind][1]}
                for t in tokens.tokens
            ]
        ),
        hide_index=True,
    )

encoding = guarded(lambda: client.encode(prompt, student_id()))
if encoding is None:
    st.stop()
vectors = tensor_from_proto(encoding.embeddings).astype(np.float32)
st.subheader("The embedding matrix")
st.markdown(
    f"One row per position, {vectors.shape[1]} numbers per row (red positive, blue negative). "
    "The UNet reads all of it, at every denoising step, through cross-attention."
)
st.image(
    enlarge(diverging(vectors), width=768, height=4 * vectors.shape[0]),
    caption=f"{vectors.shape[0]} × {vectors.shape[1]} text embeddings (rows: positions; columns: numbers)",
)
st.markdown("**How long each position's vector is** (its length, the square root of the sum of its squares):")
lengths = pd.DataFrame({"position": range(len(encoding.token_norms)), "length": list(encoding.token_norms)})
st.altair_chart(
    alt.Chart(lengths)
    .mark_bar()
    .encode(
        x=alt.X("position:O", title="position"),
        y=alt.Y("length:Q", title="vector length"),
        tooltip=["position", "length"],
    ),
    width="stretch",
)

st.subheader("The same word in another prompt")
st.markdown(
    "The text encoder is *causal*: each position only looks at the tokens before it. So a word's vector "
    "depends on what came before it, and the start token's vector is always the same."
)
other = st.text_input("Compare with", "a photo of an astronaut riding a camel", max_chars=1000)
second = guarded(lambda: client.encode(other, student_id()))
if second is not None:
    others = tensor_from_proto(second.embeddings).astype(np.float32)
    norms = np.linalg.norm(vectors, axis=1) * np.linalg.norm(others, axis=1)
    similarity = (vectors * others).sum(axis=1) / np.maximum(norms, 1e-6)
    st.markdown(
        "**How alike the two prompts' vectors are, position by position** (cosine similarity, 1 = same direction):"
    )
    alike = pd.DataFrame({"position": range(len(similarity)), "similarity": similarity})
    st.altair_chart(
        alt.Chart(alike)
        .mark_line(point=True)
        .encode(
            x=alt.X("position:Q", title="position"),
            y=alt.Y("similarity:Q", title="cosine similarity"),
            tooltip=["position", "similarity"],
        ),
        width="stretch",
    )
    st.caption(f"Position 0 (start token): {similarity[0]:.3f}. Positions after the first different piece drift apart.")
