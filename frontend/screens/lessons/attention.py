"""Lesson 7: which word paints where - each token's cross-attention map over the picture, step by step.

Every sentence about where the attention goes is measured on the run on screen
(frontend/material/measures.py); what is only known of Stable Diffusion is labelled as such, with its source.
"""

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st
from babel.numbers import format_percent
from PIL import Image

from frontend.client import get_client
from frontend.drawing.look import alt_text
from frontend.drawing.views import enlarge, guarded, plain
from frontend.language import N_, _, locale, ngettext, number, percent
from frontend.material import measures
from frontend.material.examples import examples
from frontend.player import PlayerFrame, guess_panel, guess_picture, play
from frontend.stream.load import load
from services.common.api import pb
from services.common.include_mask import Probe

PROBES = [Probe.LATENT_PREVIEW, Probe.PREDICTED_X0_PREVIEW, Probe.CROSS_ATTENTION]
SIZE = 256  # pixels on screen for each picture
LEGEND_ALT = N_(
    "The map's colour scale (viridis), left to right: dark purple for no share of the attention, through blue "
    "and green, to yellow for {times} times the even share or more"
)
EXAMPLE, OWN = N_("A lesson example"), N_("Your own prompt")


def overlay(picture: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """A [h, w] map over the picture in grey: the map's colours are its own, never mixed with the picture's.

    Each cell is drawn as a square (the latent's real grid), on a fixed viridis ramp from 0 to
    measures.TIMES_EVEN times the share an even spread would give: so two words' maps compare.
    """
    base = enlarge(picture, SIZE).astype(np.float32)
    grey = (base @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None] * np.ones(3, dtype=np.float32)
    level = measures.times_even(heat.astype(np.float32)) / measures.TIMES_EVEN
    cells = Image.fromarray((np.clip(level, 0, 1) * 255).astype(np.uint8))
    level = np.asarray(cells.resize(base.shape[1::-1], Image.Resampling.NEAREST), dtype=np.float32) / 255
    return (0.35 * grey + 0.65 * measures.viridis(level)).astype(np.uint8)


def grids(resolutions: list[tuple[int, np.ndarray]]) -> str:
    """The grids the model reads the text at, with their layer counts, e.g. 8 x 8 (3 layers) and 4 x 4 (4 layers)."""
    named = [
        ngettext("{size} ({count} layer)", "{size} ({count} layers)", n).format(
            size=f"{m.shape[1]} × {m.shape[2]}", count=number(n)
        )
        for n, m in resolutions
    ]
    return named[0] if len(named) == 1 else _("{first} and {last}").format(first=", ".join(named[:-1]), last=named[-1])


def tenths(share: float) -> str:
    """A share as a percentage with one decimal, as the language writes it (12.3%, 12,3 %)."""
    pattern = locale().percent_formats[None].pattern.replace("#0", "#0.0", 1)
    return format_percent(share, format=pattern, locale=locale())


st.title(_("7. Which word paints where"))
st.markdown(
    _(
        "The UNet reads the prompt through **cross-attention**. In each cross-attention layer, every position of "
        "the latent (a query) asks the 77 text vectors (the keys) *which of you matters here?*: it scores each "
        "one, turns the scores into shares that add up to one (a softmax), and mixes the vectors' values by those "
        "shares. One token's shares over all positions form its **map**: where in the picture that word is read."
    )
)

# The options stay the English msgids (the session keeps them); the student reads them in their language.
source = st.radio(_("Prompt"), [EXAMPLE, OWN], format_func=_, horizontal=True, key="attention-source")
if source == EXAMPLE:
    items = examples("attention-maps")
    if not items:
        st.info(_("No attention examples are set up on this server: type your own prompt instead."))
        st.stop()
    example = st.selectbox(
        _("Example"),
        items,
        format_func=lambda e: plain(_("{prompt} (seed {seed})").format(prompt=e.request.prompt, seed=e.label("seed")),
                                    "text"),
        key="attention-example",
    )  # fmt: skip
    run = guarded(lambda: load(example.request, PROBES, lesson_entry=example.id))
else:
    with st.form("attention-own"):
        prompt = st.text_input(_("Your prompt"), "a red circle on the left", max_chars=300)
        seed = st.number_input(_("Seed"), 0, 2**32 - 1, 1)
        asked = st.form_submit_button(_("Draw it"))
    if asked and prompt.strip():
        st.session_state["attention-request"] = pb.GenerateRequest(
            prompt=prompt, seed=int(seed), num_inference_steps=20
        ).SerializeToString()
    if "attention-request" not in st.session_state:
        st.stop()
    request = pb.GenerateRequest.FromString(st.session_state["attention-request"])
    run = guarded(lambda: load(request, PROBES))
if run is None or run.prompt_tokens is None:
    st.stop()
if any(step.attention is None for step in run.steps):
    st.warning(_("This run was made without its attention maps; ask your teacher to render the lesson again."))
    st.stop()
info = guarded(get_client().model_info)
on_shapes = info is not None and info.model_family == "shapes"

# The maps keep the start token, the prompt's pieces and the end token (padding is left out).
tokens = [t for t in run.prompt_tokens.tokens if t.kind != pb.TOKEN_KIND_PADDING]
padding_count = len(run.prompt_tokens.tokens) - len(tokens)
maps = np.stack([step.attention for step in run.steps]).astype(np.float32)  # [steps, tokens, h, w]
labels = [t.text.strip() or "∅" for t in tokens]
ALL_ALIKE = 0.9  # a correlation past which two maps are, for a student, the same pattern
labels[0], labels[-1] = _("‹start›"), _("‹end›")
pieces = list(range(1, len(tokens) - 1)) or [0]
resolutions = run.steps[0].attention_by_resolution
total = len(run.steps)
grid_h, grid_w = maps.shape[2], maps.shape[3]
layers = sum(n for n, _ in resolutions)

# What this code does, said exactly; DAAM cited for what it shares with it.
st.markdown(
    _(
        "The maps below are those of the prompt's branch. This model reads the text at grids of {grids}. "
        "Each layer's shares are averaged over its heads, resized (bilinear) to the latent's {grid_h} × {grid_w} "
        "grid and averaged over all {layers} cross-attention layers: one map per step. The summed pictures add up "
        "the steps' maps. DAAM (Tang et al., 2023) builds its word maps in a similar way (heads and layers "
        "combined, steps added up); unlike here, it upsamples each map to 64 × 64 (bicubic) and leaves out the "
        "UNet's middle block."
    ).format(grids=grids(resolutions), grid_h=grid_h, grid_w=grid_w, layers=number(layers))
)

st.markdown(_("**Choose a piece of the prompt** to see where the UNet reads it:"))
chosen = st.pills(_("Piece"), pieces, format_func=lambda i: plain(labels[i]), default=pieces[-1],
                  key="attention-token")  # fmt: skip
chosen = pieces[-1] if chosen is None else chosen
word = labels[chosen]

frames = [
    PlayerFrame(
        _("step {step} of {total}").format(step=k, total=total),
        (overlay(run.image, maps[k - 1, chosen]), guess_picture(step)),
        step.timestep,
        step.sigma,
    )
    for k, step in enumerate(run.steps, start=1)
]
st.markdown(
    _("**Where «{word}» is read, step by step** (over the final picture, in grey), beside the model's guess:").format(
        word=plain(word)
    )
)
play(frames, [_("the map of «{word}»").format(word=word), _(guess_panel(run))], key="attention-player", width=SIZE,
     prompt=run.request.prompt)  # fmt: skip
st.image(measures.legend(SIZE), width=SIZE, alt=_(LEGEND_ALT).format(times=number(measures.TIMES_EVEN)))
st.caption(
    _(
        "The map's colours: dark purple where the word gets no share, yellow where it gets {times} "
        "times the share an even spread would give, or more; each square is one position of the latent grid. The "
        "picture underneath is grey, so every colour you see is the map's."
    ).format(times=number(measures.TIMES_EVEN))
)
first_area, last_area = measures.half_mass_area(maps[0, chosen]), measures.half_mass_area(maps[-1, chosen])
st.markdown(
    _(
        "On this run, half of «{word}»'s map lies on {first} of the picture at step 1 and on "
        "{last} at step {total} (an even spread would need {even})."
    ).format(word=plain(word), first=percent(first_area), last=percent(last_area), total=total, even=percent(0.5))
)

summed = maps.sum(axis=0)  # [tokens, h, w], over all steps
left, middle, right = st.columns(3)
prompt = run.request.prompt
over_steps = _("summed over all {total} steps, on the viridis scale").format(total=total)
left.image(overlay(run.image, summed[chosen]),
           caption=_("«{word}», summed over all {total} steps").format(word=word, total=total),
           alt=alt_text(_("the attention map of «{word}» over the picture in grey").format(word=word), prompt,
                        over_steps))  # fmt: skip
middle.image(overlay(run.image, summed[-1]), caption=_("‹end›, the token closing the prompt, summed"),
             alt=alt_text(_("the attention map of ‹end›, the token closing the prompt"), prompt,
                          over_steps))  # fmt: skip
right.image(run.image, caption=_("the picture itself"), width=SIZE, alt=alt_text(_("the final picture"), prompt))

# Where each piece's map puts its mass, measured; on Shapes, against the shape the judge finds.
mask = None
if on_shapes:
    from services.common.shapes_judge import foreground  # numpy only: a Shapes picture's shape pixels

    mask = foreground(run.image)
    mask = mask if mask.any() else None
rows = []
for index in [*pieces, len(tokens) - 1]:
    row = {_("piece"): labels[index], _("half of its map lies on"): percent(measures.half_mass_area(summed[index]))}
    if mask is not None:
        on, share = measures.on_mask(summed[index], mask)
        row[_("its map on the shape")] = percent(on)
        row[_("times the shape's share")] = _("{times}×").format(times=number(on / share, digits=1))
    rows.append(row)
sentences = []
if mask is not None:
    on, share = measures.on_mask(summed[chosen], mask)
    sentences.append(
        _(
            "«{word}» puts {on} of its map (summed over the steps) on the shape's pixels, which are "
            "{share} of the picture: {times} times their share."
        ).format(word=plain(word), on=percent(on), share=percent(share), times=number(on / share, digits=1))
    )
others = [i for i in pieces if i != chosen]
if others:
    closeness = {i: measures.alike(summed[chosen], summed[i]) for i in others}
    most, least = max(closeness, key=closeness.__getitem__), min(closeness, key=closeness.__getitem__)
    sentences.append(
        _(
            "Its map is most alike «{most}»'s (correlation {most_r}) and least alike "
            "«{least}»'s ({least_r}); 1 would be the same pattern."
        ).format(
            most=plain(labels[most]),
            most_r=number(closeness[most], digits=2),
            least=plain(labels[least]),
            least_r=number(closeness[least], digits=2),
        )
    )
if len(pieces) > 1:
    # Said plainly when it holds: on a small model every word may be read in the same place.
    least_alike = min(measures.alike(summed[i], summed[j]) for i in pieces for j in pieces if i < j)
    if least_alike >= ALL_ALIKE:
        sentences.append(
            _(
                "On this run every piece's map is nearly the same pattern (any two correlate at {least} or "
                "more): the model reads all the words, place words included, where it draws the shape. What differs "
                "is how strongly each word is read there (the table)."
            ).format(least=number(least_alike, digits=2))
        )
if sentences:
    st.markdown(" ".join(sentences))
st.dataframe(pd.DataFrame(rows), hide_index=True)
st.markdown(
    _(
        "The **end token** comes after every word, and the text encoder lets each position read the tokens before "
        "it and itself, so its vector can sum up the whole prompt: compare its map with the words'."
    )
)

# Each position's share of the attention: the kept tokens, and the padding that fills the window.
mean = maps.mean(axis=(0, 2, 3))  # mean over steps and positions: each token's share of the probability
share = measures.shares(maps, padding_count)
rest = _("padding (the rest)")
table = pd.DataFrame({"token": [*labels, rest], "share": [*mean, share.padding]})
st.markdown(_("**Who gets the attention** (each token's share of every position's attention, over all steps):"))
# Positions in the prompt's order, named by number too: the same word in two examples is two bars, never one.
table["token"] = [f"{n} {label}" for n, label in enumerate(labels)] + [rest]
st.altair_chart(
    alt.Chart(table)
    .mark_bar()
    .encode(
        x=alt.X("token:N", sort=list(table["token"]), title=None, axis=alt.Axis(labelAngle=0)),
        y=alt.Y("share:Q", title=_("share of the attention"), axis=alt.Axis(format="%")),
        tooltip=[alt.Tooltip("token:N", title=_("token")), alt.Tooltip("share:Q", title=_("share"), format=".1%")],
    )
    .properties(
        description=_("Bar chart of each token's share of the attention: {values}").format(
            values="; ".join(
                f"{token} {tenths(share)}" for token, share in zip(table["token"], table["share"], strict=True)
            )
        )
    ),
    width="stretch",
)
st.markdown(
    measures.shares_sentence(share)
    + " "
    + _("The padding positions are copies of the end token, so they too can carry the prompt's summary.")
)
st.caption(
    _(
        "Stable Diffusion only (reported, not measured here): there the start token is found to take much of the "
        "attention while meaning little, so tools that draw word maps leave it out (Attend-and-Excite, Chefer et "
        "al., 2023). Whether this model does the same, the numbers above say."
    )
)

with st.expander(_("Each resolution on its own")):
    st.markdown(
        ngettext(
            "This model reads the text at {count} grid size: {grids}. Here is «{word}» summed over the steps, "
            "at each size:",
            "This model reads the text at {count} grid sizes: {grids}. Here is «{word}» summed over the steps, "
            "at each size:",
            len(resolutions),
        ).format(count=number(len(resolutions)), grids=grids(resolutions), word=plain(word))
    )
    per_grid = []
    for column, (count, first) in zip(st.columns(len(resolutions)), resolutions, strict=True):
        index = resolutions.index((count, first))
        heat = sum(step.attention_by_resolution[index][1][chosen].astype(np.float32) for step in run.steps)
        size = f"{first.shape[1]} × {first.shape[2]}"
        caption = ngettext("{size} grid, {count} layer", "{size} grid, {count} layers", count)
        summed_layers = ngettext("{count} layer, summed over the steps", "{count} layers, summed over the steps", count)
        column.image(overlay(run.image, heat), caption=caption.format(size=size, count=number(count)),
                     alt=alt_text(_("the attention map of «{word}» at the {size} grid").format(word=word, size=size),
                                  run.request.prompt, summed_layers.format(count=number(count))))  # fmt: skip
        if mask is not None:
            on, part = measures.on_mask(heat, mask)
            per_grid.append(
                _("{size}: {times} times the shape's share on the shape").format(
                    size=size, times=number(on / part, digits=1)
                )
            )
        else:
            per_grid.append(
                _("{size}: half of the map on {area} of the picture").format(
                    size=size, area=percent(measures.half_mass_area(heat))
                )
            )
    st.markdown(_("On this run, «{word}» at each size: {sizes}.").format(word=plain(word), sizes="; ".join(per_grid)))
    st.caption(
        _(
            "A rule of thumb for Stable Diffusion, whose grids are 64, 32, 16 and 8 positions wide: the fine grids "
            "place details, the coarse ones the layout. It is said of that model; compare this model's sizes above."
        )
    )
