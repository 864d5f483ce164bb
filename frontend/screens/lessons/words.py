"""Lesson 2: words to numbers - CLIP's real tokens, the 77-token window, the embedding matrix."""

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from frontend.client import get_client, student_id
from frontend.drawing.charts import positions_in_words
from frontend.drawing.views import diverging, enlarge, guarded, plain
from frontend.material.labels import SHAPES_FAMILY, unlearned_sentence, unlearned_words
from services.common.api import pb
from services.common.codecs import tensor_from_proto

KIND_STYLE = {
    pb.TOKEN_KIND_START: ("#dbeafe", "start"),
    pb.TOKEN_KIND_PROMPT: ("#fef3c7", "prompt"),
    pb.TOKEN_KIND_END: ("#dcfce7", "end"),
    pb.TOKEN_KIND_PADDING: ("#f3f4f6", "padding"),
}
# The prompt and the one compared with it, by model family: words the model learned, differing in one.
PROMPTS = {
    SHAPES_FAMILY: ("a red circle on the left", "a blue circle on the left"),
    "stable-diffusion": ("a photo of an astronaut riding a horse", "a photo of an astronaut riding a camel"),
}
# Cosine similarity printed as 1.000 at three decimals: the two vectors are the same.
SAME = 0.9995


def drift_sentence(ids: list[int], other_ids: list[int], texts: list[str], other_texts: list[str],
                   similarity: np.ndarray) -> str:  # fmt: skip
    """What the similarity chart shows, read from its data: where the prompts' pieces first differ, and after."""
    start = f"Position 0 (start token): {similarity[0]:.3f}."
    first = next((i for i, (a, b) in enumerate(zip(ids, other_ids, strict=True)) if a != b), None)
    if first is None:
        return f"{start} The two prompts have the same pieces, so every position's vector is the same."
    before, after = similarity[:first], similarity[first:]
    if first > 1:
        alike = "the same (similarity 1.000)" if before.min() >= SAME else f"close (at least {before.min():.3f})"
        start += f" Positions 0 to {first - 1} hold the same pieces in both prompts, and their vectors are {alike}."
    differ = int((after < SAME).sum())
    lowest = first + int(after.argmin())
    which = "every vector differs" if differ == len(after) else f"{differ} of {len(after)} vectors differ"
    # The window ends with the end token repeated (the padding): each copy reads the whole prompt, so it can
    # differ as much as the changed word, or more. Say so when the lowest is there.
    end = ids.index(ids[-1])
    where = ""
    if lowest > end:
        where = f" Position {lowest} is padding (the end token repeated), which reads the whole prompt too."
    elif lowest == end:
        where = f" Position {lowest} is the end token, which reads the whole prompt."
    return (
        f"{start} From position {first} on (the first different piece: “{plain(texts[first])}” against "
        f"“{plain(other_texts[first])}”), {which}: similarity from {after.min():.3f} to {after.max():.3f}, "
        f"lowest at position {lowest}.{where}"
    )


st.title("2. Words to numbers")
st.markdown(
    "The model never sees words. A **tokenizer** cuts the prompt into pieces from a fixed vocabulary and "
    "gives each piece a number (its id); the **text encoder** then turns each position into a vector."
)

client = get_client()
info = guarded(client.model_info)
if info is None:
    st.stop()
name = info.model_display_name or "This model"
first_prompt, other_prompt = PROMPTS.get(info.model_family, PROMPTS["stable-diffusion"])
prompt = st.text_input("Prompt", first_prompt, max_chars=1000)
tokens = guarded(lambda: client.tokenize(prompt, student_id()))
if tokens is None:
    st.stop()


def chip(token: pb.Token) -> str:
    colour, kind = KIND_STYLE[token.kind]
    learned = "learned in training" if token.known else "never learned in training"
    title = plain(f"position {token.position}, id {token.id}, {kind}, piece {token.piece}, {learned}", "html")
    text = plain(token.text) or "∅"  # between inline tags, markdown still reads the text
    style = f"background:{colour};padding:2px 6px;margin:2px;border-radius:6px;display:inline-block"
    if not token.known:  # a piece the model never learned: struck through, with a red dashed border
        style += ";border:2px dashed #dc2626;text-decoration:line-through"
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
unknown = unlearned_words(tokens)
if unknown:
    st.warning(
        unlearned_sentence(unknown, name) + " Its pieces are struck through above, with a red dashed border.",
        icon=":material/help:",
    )
elif info.model_family == SHAPES_FAMILY:
    st.success(f"{name} learned every word of this prompt: they are all words of its training captions.")
if tokens.truncated:
    st.warning(
        f"Only {tokens.max_length - 2} pieces fit. The model never sees the rest: **{plain(tokens.truncated_text)}** "
        f"({len(tokens.truncated_tokens)} pieces were cut off; Stable Diffusion's own pipeline cuts them too, "
        "and says so only in its log).",
        icon=":material/content_cut:",
    )
with st.expander("Every token"):
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "position": t.position,
                    "piece": t.piece,
                    "id": t.id,
                    "kind": KIND_STYLE[t.kind][1],
                    "learned": "yes" if t.known else "no",
                }
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
    "The UNet reads all of it, at every denoising step, through cross-attention, together with a second "
    "matrix like it, made from the empty (or negative) prompt, that guidance compares it with."
)
st.image(
    enlarge(diverging(vectors), width=768, height=4 * vectors.shape[0]),
    caption=f"{vectors.shape[0]} × {vectors.shape[1]} text embeddings (rows: positions; columns: numbers)",
    alt=f"The text embedding matrix as colours: {vectors.shape[0]} rows (positions) of {vectors.shape[1]} numbers, "
    "red for positive numbers, blue for negative, white near zero",
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
    )
    .properties(description=positions_in_words("Bar chart of each position's vector length", lengths["length"])),
    width="stretch",
)

st.subheader("The same word in another prompt")
st.markdown(
    "The text encoder is *causal*: each position reads the tokens before it and itself (causal attention), "
    "never the ones after it. So a word's vector depends on what came before it, and the start token's vector "
    "is always the same."
)
other = st.text_input("Compare with", other_prompt, max_chars=1000)
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
        )
        .properties(description=positions_in_words("Line chart of the cosine similarity", alike["similarity"])),
        width="stretch",
    )
    other_tokens = second.tokens.tokens
    st.caption(
        drift_sentence(
            [t.id for t in tokens.tokens],
            [t.id for t in other_tokens],
            [t.text for t in tokens.tokens],
            [t.text for t in other_tokens],
            similarity,
        )
    )
