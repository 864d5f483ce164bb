"""Lesson 6: seeds pick the starting noise; schedulers pick the path from it."""

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from frontend.client import get_client
from frontend.drawing.look import alt_text
from frontend.drawing.views import enlarge, guarded, plain
from frontend.language import _, ngettext, number
from frontend.material.examples import examples, values, where
from frontend.material.labels import scheduler_names
from frontend.stream.load import load
from services.common.include_mask import Probe
from services.common.shapes_judge import judge
from services.common.shapes_world import PALETTE

st.title(_("6. Seeds and schedulers"))

st.subheader(_("The seed picks the starting noise"))
gallery = examples("seed-gallery")
if gallery:
    st.markdown(
        _("**{prompt}**: the same prompt and settings, a different seed each time.").format(
            prompt=plain(gallery[0].request.prompt)
        )
    )
    columns = st.columns(min(6, len(gallery)))
    for index, item in enumerate(gallery):
        run = guarded(lambda item=item: load(item.request, probes=[Probe.LATENT_PREVIEW], lesson_entry=item.id))
        if run is not None:
            columns[index % len(columns)].image(
                run.image, caption=_("seed {seed}").format(seed=item.label("seed")),
                alt=alt_text(_("the final picture"), item.request.prompt,
                             _("seed {seed}").format(seed=item.label("seed"))),
            )  # fmt: skip


@st.cache_data(ttl=30, show_spinner=False)
def collection_description(collection: str) -> str:
    """What the catalog says of a collection on this model (its model family's own words)."""
    listing = get_client().lessons(collection)
    return next((c.description for c in listing.collections if c.id == collection), "")


def listed(words: list[str]) -> str:
    """Words joined for a sentence: A; A and B; A, B and C."""
    if len(words) == 1:
        return words[0]
    return _("{first} and {last}").format(first=", ".join(words[:-1]), last=words[-1])


st.subheader(_("The scheduler picks the path"))
comparison = examples("scheduler-comparison")
if not comparison:
    st.stop()
info = guarded(get_client().model_info)
about = {s.name: s for s in info.schedulers} if info is not None else {}
names = scheduler_names(info)
deterministic = [s.display_name for s in about.values() if not s.ancestral]
ancestral = [s.display_name for s in about.values() if s.ancestral]
if deterministic and ancestral:
    # What each method does by construction; what it does to the pictures is measured below the chart.
    st.markdown(
        ngettext(
            "Schedulers are different numerical methods for the same denoising problem. {deterministic} are "
            "deterministic: each step follows from the last, so one seed and one step count always give the same "
            "picture. {ancestral} is **ancestral**: each step adds fresh noise, so every step count takes a "
            "different noisy path. The chart below measures what that does on this model.",
            "Schedulers are different numerical methods for the same denoising problem. {deterministic} are "
            "deterministic: each step follows from the last, so one seed and one step count always give the same "
            "picture. {ancestral} are **ancestral**: each step adds fresh noise, so every step count takes a "
            "different noisy path. The chart below measures what that does on this model.",
            len(ancestral),
        ).format(deterministic=listed(deterministic), ancestral=listed(ancestral))
    )
description = guarded(lambda: collection_description("scheduler-comparison"))
if description:
    st.caption(plain(description))
precomputed_seeds = [int(seed) for seed in values(comparison, "seed")]
step_counts = values(comparison, "steps")
seed_column, steps_column, schedulers_column = st.columns([1, 2, 3])
seed = seed_column.number_input(
    _("Seed"),
    min_value=0,
    max_value=info.limits.max_seed if info is not None and info.limits.max_seed else None,
    value=precomputed_seeds[0],
    help=_("Precomputed: {seeds}. Any other seed is computed when you pick it.").format(
        seeds=", ".join(map(str, precomputed_seeds))
    ),
)
counts = sorted(
    steps_column.multiselect(
        _("Steps"), step_counts, default=step_counts, format_func=lambda n: _("{count} steps").format(count=n)
    ),
    key=int,
)
chosen = schedulers_column.multiselect(
    _("Schedulers"),
    values(comparison, "scheduler"),
    default=values(comparison, "scheduler"),
    format_func=lambda n: names.get(n, n),
)
if seed not in precomputed_seeds:
    count = len(counts) * len(chosen)
    st.caption(
        ngettext(
            "Seed {seed} is not precomputed: the model computes {count} picture now, for the lesson (they do not "
            "count against your own pictures). Pick fewer schedulers or step counts to see them sooner.",
            "Seed {seed} is not precomputed: the model computes {count} pictures now, for the lesson (they do not "
            "count against your own pictures). Pick fewer schedulers or step counts to see them sooner.",
            count,
        ).format(seed=seed, count=number(count))
    )
SETTLED_LEVELS = 1  # a mean change below one level (of 255) per pixel is invisible
refused = False  # once the service says no to a new seed's picture (busy, or your limit), ask no more this time


def picture(scheduler: str, count: str) -> np.ndarray | None:
    """The final image of one scheduler at one step count, from the chosen seed."""
    global refused
    item = where(comparison, scheduler=scheduler, steps=count)[0]
    if seed in precomputed_seeds:
        item = where(comparison, scheduler=scheduler, steps=count, seed=str(seed))[0]
        run = guarded(lambda: load(item.request, probes=[Probe.LATENT_PREVIEW], lesson_entry=item.id))
    elif refused:
        return None
    else:
        request = item.request
        request.seed = seed
        # Named as the lesson's entry at another seed: the service computes it as the class's work.
        run = guarded(lambda: load(request, probes=[Probe.LATENT_PREVIEW], lesson_entry=item.id))
        refused = run is None
    return run.image if run is not None else None


first = comparison[0].request
st.markdown(
    _("**{prompt}**, seed {seed}, guidance {guidance}: one row per scheduler, one column per step count.").format(
        prompt=plain(first.prompt), seed=seed, guidance=number(first.guidance_scale)
    )
)
changes = {}
shown: list[tuple[str, str, np.ndarray]] = []  # (scheduler, step count, picture), for the judge below
for scheduler in chosen:
    row = st.columns(len(counts) + 1)
    row[0].markdown(f"**{names.get(scheduler, scheduler)}**")
    if scheduler in about:
        row[0].caption(about[scheduler].description)
    images = []
    for column, count in zip(row[1:], counts, strict=True):
        image = picture(scheduler, count)
        if image is not None:
            column.image(
                enlarge(image, 160) if image.shape[1] < 160 else image,
                caption=_("{count} steps").format(count=count),
                alt=alt_text(_("the final picture"), first.prompt,
                             _("{scheduler} scheduler").format(scheduler=names.get(scheduler, scheduler)),
                             _("{count} steps").format(count=count), _("seed {seed}").format(seed=seed)),
            )  # fmt: skip
            images.append(image.astype(np.float32))
            shown.append((names.get(scheduler, scheduler), count, image))
    if len(images) >= 2:
        changes[names.get(scheduler, scheduler)] = float(np.abs(images[-1] - images[-2]).mean())
if changes:
    st.markdown(
        _(
            "**How much the picture changes between {fewer} and {more} steps** (mean pixel difference, 0 to 255):"
        ).format(fewer=counts[-2], more=counts[-1])
    )
    change = pd.DataFrame({"scheduler": list(changes), "change": list(changes.values())})
    SCHEDULER, CHANGE = _("scheduler"), _("mean pixel difference")
    st.altair_chart(
        alt.Chart(change)
        .mark_bar()
        .encode(
            x=alt.X("scheduler:N", sort=None, title=None, axis=alt.Axis(labelAngle=0)),
            y=alt.Y("change:Q", title=CHANGE),
            tooltip=[alt.Tooltip("scheduler:N", title=SCHEDULER), alt.Tooltip("change:Q", title=CHANGE, format=".1f")],
        )
        .properties(
            description=_("Bar chart of the mean pixel difference between {fewer} and {more} steps: {values}").format(
                fewer=counts[-2],
                more=counts[-1],
                values="; ".join(f"{name} {number(value, 1)}" for name, value in changes.items()),
            )
        ),
        width="stretch",
    )
    # Measured on the pictures above, whatever the model: which changed most and least, which settled.
    most, least = max(changes, key=changes.get), min(changes, key=changes.get)
    if len(changes) > 1:
        sentence = _(
            "On these pictures, **{most}** changed most ({most_change} levels per pixel) and {least} least "
            "({least_change})"
        ).format(most=most, most_change=number(changes[most], 1), least=least, least_change=number(changes[least], 1))
    else:
        sentence = _("On these pictures, **{most}** changed most ({most_change} levels per pixel)").format(
            most=most, most_change=number(changes[most], 1)
        )
    settled = [name for name, value in changes.items() if value < SETTLED_LEVELS]
    if settled:
        sentence += ngettext(
            "; {names} changed by less than {levels} level, a change no eye can see",
            "; {names} changed by less than {levels} levels, a change no eye can see",
            SETTLED_LEVELS,
        ).format(names=listed(settled), levels=number(SETTLED_LEVELS))
    st.markdown(sentence + ".")

# On Shapes a picture can be judged against its prompt: a step count too small for a method shows as a wrong colour.
colour = next((word for word in first.prompt.split() if word in PALETTE), None)
if info is not None and info.model_family == "shapes" and colour and shown:
    wrong = [(name, count, judge(image).colour) for name, count, image in shown if judge(image).colour != colour]
    right = len(shown) - len(wrong)
    sentence = _("The pixel judge sees the prompt's colour ({colour}) in {right} of {total} pictures").format(
        colour=colour, right=number(right), total=number(len(shown))
    )
    if wrong:
        misses = [
            _("{scheduler} at {count} steps ({seen})").format(scheduler=name, count=count, seen=seen)
            for name, count, seen in wrong
        ]
        sentence += _(": not in {pictures}").format(pictures=listed(misses))
    st.markdown(sentence + ".")
