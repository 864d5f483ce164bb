"""Lesson 2: words to numbers - CLIP's real tokens, the 77-token window, the embedding matrix."""

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from frontend.client import get_client, student_id
from frontend.drawing.charts import positions_in_words
from frontend.drawing.views import diverging, enlarge, guarded, plain
from frontend.language import N_, _, ngettext, number
from frontend.material.labels import SHAPES_FAMILY, unlearned_sentence, unlearned_words
from services.common.api import pb
from services.common.codecs import tensor_from_proto

KIND_STYLE = {
    pb.TOKEN_KIND_START: ("#dbeafe", N_("start")),
    pb.TOKEN_KIND_PROMPT: ("#fef3c7", N_("prompt")),
    pb.TOKEN_KIND_END: ("#dcfce7", N_("end")),
    pb.TOKEN_KIND_PADDING: ("#f3f4f6", N_("padding")),
}  # each kind's colour, and its name (translated where shown)
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
    sentences = [_("Position 0 (start token): {similarity}.").format(similarity=number(similarity[0], digits=3))]
    first = next((i for i, (a, b) in enumerate(zip(ids, other_ids, strict=True)) if a != b), None)
    if first is None:
        sentences.append(_("The two prompts have the same pieces, so every position's vector is the same."))
        return " ".join(sentences)
    before, after = similarity[:first], similarity[first:]
    if first > 1:
        alike = (
            _(
                "Positions 0 to {last} hold the same pieces in both prompts, and their vectors are the same "
                "(similarity {one})."
            )
            if before.min() >= SAME
            else _(
                "Positions 0 to {last} hold the same pieces in both prompts, and their vectors are close (at least "
                "{lowest})."
            )
        )
        sentences.append(alike.format(last=first - 1, one=number(1, digits=3), lowest=number(before.min(), digits=3)))
    differ = int((after < SAME).sum())
    lowest = first + int(after.argmin())
    which = (
        _(
            "From position {first} on (the first different piece: “{piece}” against “{other}”), every vector "
            "differs: similarity from {low} to {high}, lowest at position {lowest}."
        )
        if differ == len(after)
        else _(
            "From position {first} on (the first different piece: “{piece}” against “{other}”), {differ} of {count} "
            "vectors differ: similarity from {low} to {high}, lowest at position {lowest}."
        )
    )
    sentences.append(
        which.format(
            first=first,
            piece=plain(texts[first]),
            other=plain(other_texts[first]),
            differ=differ,
            count=len(after),
            low=number(after.min(), digits=3),
            high=number(after.max(), digits=3),
            lowest=lowest,
        )
    )
    # The window ends with the end token repeated (the padding): each copy reads the whole prompt, so it can
    # differ as much as the changed word, or more. Say so when the lowest is there.
    end = ids.index(ids[-1])
    if lowest > end:
        sentences.append(
            _("Position {position} is padding (the end token repeated), which reads the whole prompt too.").format(
                position=lowest
            )
        )
    elif lowest == end:
        sentences.append(
            _("Position {position} is the end token, which reads the whole prompt.").format(position=lowest)
        )
    return " ".join(sentences)


st.title(_("2. Words to numbers"))
st.markdown(
    _(
        "The model never sees words. A **tokenizer** cuts the prompt into pieces from a fixed vocabulary and "
        "gives each piece a number (its id); the **text encoder** then turns each position into a vector."
    )
)

client = get_client()
info = guarded(client.model_info)
if info is None:
    st.stop()
name = info.model_display_name or _("This model")
first_prompt, other_prompt = PROMPTS.get(info.model_family, PROMPTS["stable-diffusion"])
prompt = st.text_input(_("Prompt"), first_prompt, max_chars=1000)
tokens = guarded(lambda: client.tokenize(prompt, student_id()))
if tokens is None:
    st.stop()


def chip(token: pb.Token) -> str:
    colour, kind = KIND_STYLE[token.kind]
    described = (
        _("position {position}, id {id}, {kind}, piece {piece}, learned in training")
        if token.known
        else _("position {position}, id {id}, {kind}, piece {piece}, never learned in training")
    )
    title = plain(described.format(position=token.position, id=token.id, kind=_(kind), piece=token.piece), "html")
    text = plain(token.text) or "∅"  # between inline tags, markdown still reads the text
    style = f"background:{colour};padding:2px 6px;margin:2px;border-radius:6px;display:inline-block"
    if not token.known:  # a piece the model never learned: struck through, with a red dashed border
        style += ";border:2px dashed #dc2626;text-decoration:line-through"
    return f'<span title="{title}" style="{style}">{text}</span>'


end = next(t.position for t in tokens.tokens if t.kind == pb.TOKEN_KIND_END)
shown = tokens.tokens[: end + 3]
st.markdown(
    " ".join(chip(t) for t in shown) + " " + _("… ({count} more padding)").format(count=tokens.max_length - len(shown)),
    unsafe_allow_html=True,
)
st.markdown(
    ngettext(
        "Your prompt became **{count} piece**. The window always holds exactly **{window}**: a start token, the "
        "pieces, an end token, then padding (the end token repeated). CLIP lower-cases the text; `</w>` in a piece "
        "marks the end of a word, so one word can be several pieces.",
        "Your prompt became **{count} pieces**. The window always holds exactly **{window}**: a start token, the "
        "pieces, an end token, then padding (the end token repeated). CLIP lower-cases the text; `</w>` in a piece "
        "marks the end of a word, so one word can be several pieces.",
        tokens.prompt_token_count,
    ).format(count=tokens.prompt_token_count, window=tokens.max_length)
)
unknown = unlearned_words(tokens)
if unknown:
    st.warning(
        unlearned_sentence(unknown, name) + " " + _("Its pieces are struck through above, with a red dashed border."),
        icon=":material/help:",
    )
elif info.model_family == SHAPES_FAMILY:
    st.success(
        _("{model} learned every word of this prompt: they are all words of its training captions.").format(model=name)
    )
if tokens.truncated:
    st.warning(
        ngettext(
            "Only {fit} pieces fit. The model never sees the rest: **{rest}** ({count} piece was cut off; Stable "
            "Diffusion's own pipeline cuts it too, and says so only in its log).",
            "Only {fit} pieces fit. The model never sees the rest: **{rest}** ({count} pieces were cut off; Stable "
            "Diffusion's own pipeline cuts them too, and says so only in its log).",
            len(tokens.truncated_tokens),
        ).format(fit=tokens.max_length - 2, rest=plain(tokens.truncated_text), count=len(tokens.truncated_tokens)),
        icon=":material/content_cut:",
    )
with st.expander(_("Every token")):
    position, piece, token_id, kind, learned = _("position"), _("piece"), _("id"), _("kind"), _("learned")
    yes, no = _("yes"), _("no")
    st.dataframe(
        pd.DataFrame(
            [
                {
                    position: t.position,
                    piece: t.piece,
                    token_id: t.id,
                    kind: _(KIND_STYLE[t.kind][1]),
                    learned: yes if t.known else no,
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
st.subheader(_("The embedding matrix"))
st.markdown(
    _(
        "One row per position, {count} numbers per row (red positive, blue negative). The UNet reads all of it, at "
        "every denoising step, through cross-attention, together with a second matrix like it, made from the empty "
        "(or negative) prompt, that guidance compares it with."
    ).format(count=vectors.shape[1])
)
st.image(
    enlarge(diverging(vectors), width=768, height=4 * vectors.shape[0]),
    caption=_("{rows} × {columns} text embeddings (rows: positions; columns: numbers)").format(
        rows=vectors.shape[0], columns=vectors.shape[1]
    ),
    alt=_(
        "The text embedding matrix as colours: {rows} rows (positions) of {columns} numbers, red for positive "
        "numbers, blue for negative, white near zero"
    ).format(rows=vectors.shape[0], columns=vectors.shape[1]),
)
st.markdown(_("**How long each position's vector is** (its length, the square root of the sum of its squares):"))
lengths = pd.DataFrame({"position": range(len(encoding.token_norms)), "length": list(encoding.token_norms)})
st.altair_chart(
    alt.Chart(lengths)
    .mark_bar()
    .encode(
        x=alt.X("position:O", title=_("position")),
        y=alt.Y("length:Q", title=_("vector length")),
        tooltip=[alt.Tooltip("position", title=_("position")), alt.Tooltip("length", title=_("length"))],
    )
    .properties(description=positions_in_words(_("Bar chart of each position's vector length"), lengths["length"])),
    width="stretch",
)

st.subheader(_("The same word in another prompt"))
st.markdown(
    _(
        "The text encoder is *causal*: each position reads the tokens before it and itself (causal attention), "
        "never the ones after it. So a word's vector depends on what came before it, and the start token's vector "
        "is always the same."
    )
)
other = st.text_input(_("Compare with"), other_prompt, max_chars=1000)
second = guarded(lambda: client.encode(other, student_id()))
if second is not None:
    others = tensor_from_proto(second.embeddings).astype(np.float32)
    norms = np.linalg.norm(vectors, axis=1) * np.linalg.norm(others, axis=1)
    similarity = (vectors * others).sum(axis=1) / np.maximum(norms, 1e-6)
    st.markdown(
        _("**How alike the two prompts' vectors are, position by position** (cosine similarity, 1 = same direction):")
    )
    alike = pd.DataFrame({"position": range(len(similarity)), "similarity": similarity})
    st.altair_chart(
        alt.Chart(alike)
        .mark_line(point=True)
        .encode(
            x=alt.X("position:Q", title=_("position")),
            y=alt.Y("similarity:Q", title=_("cosine similarity")),
            tooltip=[
                alt.Tooltip("position", title=_("position")),
                alt.Tooltip("similarity", title=_("similarity")),
            ],
        )
        .properties(description=positions_in_words(_("Line chart of the cosine similarity"), alike["similarity"])),
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
