"""Lesson 8: when does the picture decide? One run, its prompt switched at step k.

What survives a late switch depends on the model, so the page measures it on the pictures
it shows (frontend/material/measures.py): on Shapes the judge's colour, shape and position of each
picture; on any model, how far each picture is from the original's and from the new prompt's own.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from frontend.client import get_client
from frontend.drawing.charts import per_step
from frontend.drawing.look import alt_text
from frontend.drawing.views import guarded, plain
from frontend.language import N_, _
from frontend.material import measures
from frontend.material.examples import examples
from frontend.player import play_trajectory
from frontend.stream.load import load
from frontend.stream.wire import TrajectoryView
from services.common.api import pb
from services.common.include_mask import Probe
from services.common.shapes_world import SHAPES

PROBES = [Probe.LATENT, Probe.PREDICTED_X0, Probe.LATENT_PREVIEW, Probe.PREDICTED_X0_PREVIEW]
# The table's columns for what the judge sees (measures.PROPERTIES), in the reader's language.
PROPERTY_NAMES = {"colour": N_("colour"), "shape": N_("shape"), "position": N_("position")}

st.title(_("8. When does the picture decide?"))
st.markdown(
    _(
        "A generation is one loop of denoising steps. Here the loop starts with one prompt and, after **k** "
        "steps, goes on with another: same seed, same scheduler, nothing else changed. Steps 1 to k read the "
        "first prompt, so they are exactly the original run's, number for number; from step k + 1 on, the UNet "
        "reads the new prompt. What a late switch can still change depends on the model: the pictures below "
        "measure it."
    )
)
info = guarded(get_client().model_info)
on_shapes = info is not None and info.model_family == "shapes"


def switched_at(k: int, total: int) -> str:
    """The switch step as the table and the slider name it: its number, or "never" for a run never switched."""
    return _("never") if k >= total else str(k)


def distance_from(run: TrajectoryView, original: TrajectoryView) -> list[float]:
    """How far each step's latent is from the original run's at the same step (0 while they are one run)."""
    return [
        float(np.linalg.norm(a - b)) if a is not None and b is not None else float("nan")
        for a, b in zip(run.latents(), original.latents(), strict=False)
    ]


items = examples("branch-at-step")
if not items:
    st.info(_("No branching examples are set up on this server; try your own below."))
else:
    first = items[0].request
    total = first.num_inference_steps
    st.markdown(
        _("From **{before}** to **{after}**, switched at step k of {total} (seed {seed}).").format(
            before=plain(first.prompt), after=plain(first.branch.prompt), total=total, seed=first.seed
        )
    )
    by_step = {int(item.label("branch_at_step")): item for item in items}
    steps = sorted(by_step)
    runs: dict[int, TrajectoryView] = {}
    columns = st.columns(len(steps))
    for column, k in zip(columns, steps, strict=True):
        item = by_step[k]
        run = guarded(lambda item=item: load(item.request, probes=PROBES, lesson_entry=item.id))
        if run is None:
            continue
        runs[k] = run
        if k >= total:
            caption = _("never switched")
        else:
            caption = _("the new prompt from the start") if k == 0 else _("k = {k}").format(k=k)
        switched = (
            _("never switched")
            if k >= total
            else _("switched to “{prompt}” at step {k}").format(prompt=item.request.branch.prompt, k=k)
        )
        column.image(run.image, caption=caption, width="stretch",
                     alt=alt_text(_("the final picture"), item.request.prompt, switched))  # fmt: skip
    st.caption(
        _("Left: switched at step 0, the run is the new prompt's own picture. Right: never switched, the original.")
    )

    # What the pictures show, measured: needs the two ends (switched at 0, never switched).
    if 0 in runs and total in runs:
        st.subheader(_("What each picture kept, measured"))
        distances = {
            k: (measures.mean_distance(run.image, runs[total].image), measures.mean_distance(run.image, runs[0].image))
            for k, run in runs.items()
        }
        table: dict[str, list[object]] = {
            _("switched at step"): [switched_at(k, total) for k in sorted(runs)],
            _("distance to the original"): [round(distances[k][0], 1) for k in sorted(runs)],
            _("distance to the new prompt's own"): [round(distances[k][1], 1) for k in sorted(runs)],
        }
        if on_shapes:
            from services.common.shapes_judge import judge  # numpy only: what a student would say of a Shapes picture

            judged = {k: judge(run.image) for k, run in runs.items()}
            for name in measures.PROPERTIES:
                table[_(PROPERTY_NAMES.get(name, name))] = [
                    getattr(judged[k], name) if judged[k].found else _("no shape") for k in sorted(runs)
                ]
            st.dataframe(pd.DataFrame(table), hide_index=True)
            said = measures.settling_sentences(measures.settling(judged, total), total)
            st.markdown(_("**On this model, in this run:**") + "\n" + "".join(f"\n- {sentence}" for sentence in said))
        else:
            st.dataframe(pd.DataFrame(table), hide_index=True)
        st.markdown(measures.nearer_sentence(distances, total))
        st.caption(
            _("Distances are the mean difference of the pixels, in levels from 0 to 255.")
            + (" " + _("Colour, shape and position are what the pixel judge sees.") if on_shapes else "")
        )
        if not on_shapes:
            st.caption(
                _(
                    "Stable Diffusion (reported, not measured here): its composition, where things are, is found to "
                    "settle in the early steps, while later steps refine (Prompt-to-Prompt, Hertz et al., 2022). "
                    "Compare with the numbers above."
                )
            )

    if runs:
        st.subheader(_("Follow one of them"))
        chosen = st.select_slider(
            _("Switched at step"),
            options=sorted(runs),
            value=sorted(runs)[len(runs) // 2],
            format_func=lambda k: switched_at(k, total),
        )
        run = runs[chosen]
        play_trajectory(run, key="branch-player", start=min(chosen, len(run.steps)))
        original = runs.get(max(runs))
        if original is not None and max(runs) >= total:
            data = pd.DataFrame(
                {
                    "step": list(range(len(run.steps) + 1)),
                    "value": distance_from(run, original),
                    "series": _("distance"),
                }
            )
            st.markdown(
                _(
                    "**How far this run's latent is from the original's, step by step.** Zero up to step {step} "
                    "(the same numbers), then the new prompt pulls it away."
                ).format(step=chosen)
            )
            st.vega_lite_chart(per_step(data, chosen, _("distance between the latents")), width="stretch")

st.subheader(_("Try it yourself"))
if info is None:
    st.stop()
with st.form("branch-own"):
    before = st.text_input(_("Start with"), "a red circle on the left", max_chars=info.limits.max_prompt_chars)
    after = st.text_input(_("Switch to"), "a blue square on the right", max_chars=info.limits.max_prompt_chars)
    steps_total = info.default_steps
    k = st.slider(_("Switch at step"), 0, steps_total, steps_total // 4)
    seed = st.number_input(_("Seed"), min_value=0, max_value=info.limits.max_seed or None, value=3)
    go = st.form_submit_button(_("Run both"), type="primary")
if go:
    request = pb.GenerateRequest(
        prompt=before, seed=int(seed), num_inference_steps=steps_total, scheduler="ddim",
        width=info.default_width, height=info.default_height,
    )  # fmt: skip
    branched = pb.GenerateRequest()
    branched.CopyFrom(request)
    branched.branch.at_step = k
    branched.branch.prompt = after
    # The original names the same two prompts, switching after its last step (never): the service then paints
    # both with one model, also when one prompt uses a word the class taught its own model (lesson 10).
    request.branch.at_step = steps_total
    request.branch.prompt = after
    plain_run = guarded(lambda: load(request, probes=PROBES, planned=N_("the original run")))
    branch_run = guarded(lambda: load(branched, probes=PROBES, planned=N_("the switched run")))
    if plain_run is not None and branch_run is not None:
        left, right = st.columns(2)
        switched_to = _("switched to “{prompt}” at step {k}")
        left.image(plain_run.image, caption=plain(before), width="stretch",
                   alt=alt_text(_("the original run's final picture"), before, _("never switched")))  # fmt: skip
        right.image(branch_run.image, caption=switched_to.format(prompt=plain(after), k=k), width="stretch",
                    alt=alt_text(_("the final picture"), before, switched_to.format(prompt=after, k=k)))  # fmt: skip
        same = sum(
            a is not None and b is not None and np.array_equal(a, b)
            for a, b in zip(plain_run.latents()[1:], branch_run.latents()[1:], strict=False)
        )
        if k < steps_total:
            shared = _(
                "The two runs share their first **{same}** steps exactly, as they should: k = {k}, so the new prompt "
                "is read from step {next} on."
            ).format(same=same, k=k, next=k + 1)
        else:
            shared = _(
                "The two runs share their first **{same}** steps exactly, as they should: k = {k}, so the new prompt "
                "is never read."
            ).format(same=same, k=k)
        st.markdown(shared)
        if on_shapes:
            from services.common.shapes_judge import judge

            kept = judge(plain_run.image), judge(branch_run.image)
            # The judge names only the shapes Shapes was made with: a prompt asking for another (a word the
            # class taught its model, lesson 10) gets its colour and place said, not a shape it cannot tell.
            named = all(any(shape in text.lower().split() for shape in SHAPES) for text in (before, after))
            if kept[0].found and kept[1].found and named:
                # The judge's words are the prompts' own (English) words: they stay as they are in every language.
                st.markdown(
                    _(
                        "The judge sees a {colour} {shape} {position} in the original and a "
                        "{new_colour} {new_shape} {new_position} in the switched run."
                    ).format(
                        colour=kept[0].colour,
                        shape=kept[0].shape,
                        position=kept[0].position,
                        new_colour=kept[1].colour,
                        new_shape=kept[1].shape,
                        new_position=kept[1].position,
                    )
                )
            elif kept[0].found and kept[1].found:
                st.markdown(
                    _(
                        "The judge sees {colour} {position} in the original and {new_colour} "
                        "{new_position} in the switched run. It tells only {shapes} apart, so it names no shape here."
                    ).format(
                        colour=kept[0].colour,
                        position=kept[0].position,
                        new_colour=kept[1].colour,
                        new_position=kept[1].position,
                        shapes=_("{first} and {last}").format(first=", ".join(SHAPES[:-1]), last=SHAPES[-1]),
                    )
                )
