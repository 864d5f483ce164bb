"""The class map drawn: each shared trajectory a path from its noise to its picture, on one projection."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from frontend.drawing.views import plain
from frontend.language import N_, _, ngettext, number, percent
from services.common.api import pb

MAP_NOTE = N_(  # shown as _(MAP_NOTE)
    "Each line is one shared picture's trajectory, from its starting noise (small dot) to its picture "
    "(large dot), drawn on the two directions along which all the class's latents vary most (PCA). "
    "Hover for the prompt: pictures of similar prompts end near each other."
)


# Okabe and Ito's colours, told apart with the common colour-blindnesses (jfly.uni-koeln.de/color/), ordered
# so that the first prompts differ most (the sky blue only after six others; the pale yellow, hard to see on
# white, last), with Tol's wine between: up to ten prompts get ten distinct colours, more repeat them.
PROMPT_COLOURS = (
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#D55E00",  # vermillion
    "#000000",  # black
    "#56B4E9",  # sky blue
    "#882255",  # wine
    "#999999",  # grey
    "#F0E442",  # yellow
)


def prompt_colours(count: int) -> list[str]:
    """One colour per prompt, in order: all distinct up to len(PROMPT_COLOURS), then repeated."""
    return [PROMPT_COLOURS[number % len(PROMPT_COLOURS)] for number in range(count)]


def map_rows(class_map: pb.ClassMap) -> pd.DataFrame:
    """One row per point: which path, its order along the path, where, and the words to hover."""
    rows = []
    for index, path in enumerate(class_map.paths):
        last = len(path.x) - 1
        for order, (x, y) in enumerate(zip(path.x, path.y, strict=True)):
            rows.append({
                "path": index, "order": order, "x": x, "y": y, "prompt": plain(path.prompt, "text"),
                "student": plain(path.student_name, "text"), "seed": path.seed,
                "point": "picture" if order == last else "noise" if order == 0 else "step",
            })  # fmt: skip
    return pd.DataFrame(rows)


def class_map_chart(class_map: pb.ClassMap) -> alt.LayerChart:
    """The paths, one colour per prompt, with their noise and picture ends marked."""
    data = map_rows(class_map)
    prompts = list(dict.fromkeys(data["prompt"]))  # in the order they were shared, each its own colour
    hover = [alt.Tooltip("prompt:N"), alt.Tooltip("student:N", title=_("shared by")), alt.Tooltip("seed:Q")]
    base = alt.Chart(data).encode(
        x=alt.X("x:Q", title=_("first direction"), axis=alt.Axis(labels=False, ticks=False)),
        y=alt.Y("y:Q", title=_("second direction"), axis=alt.Axis(labels=False, ticks=False)),
        color=alt.Color(
            "prompt:N",
            scale=alt.Scale(domain=prompts, range=prompt_colours(len(prompts))),
            legend=alt.Legend(orient="bottom", title=None, labelLimit=0, columns=2),
        ),
        tooltip=hover,
    )
    lines = base.mark_line(opacity=0.6).encode(detail="path:N", order="order:Q")
    ends = (
        base.transform_filter(alt.datum.point != "step")
        .mark_point(filled=True)
        .encode(size=alt.Size("point:N", scale=alt.Scale(domain=["noise", "picture"], range=[30, 160]), legend=None))
    )
    count = len(class_map.paths)
    words = ngettext(
        "Class map: the paths of {count} shared picture from their starting noise to their picture, "
        "one colour per prompt: {prompts}",
        "Class map: the paths of {count} shared pictures from their starting noise to their picture, "
        "one colour per prompt: {prompts}",
        count,
    ).format(count=number(count), prompts="; ".join(prompts))
    return (lines + ends).properties(height=420, description=words)


def draw_class_map(class_map: pb.ClassMap) -> None:
    """The map, or a sentence when nothing is shared yet."""
    if not class_map.paths:
        st.caption(_("Nothing is on the class map yet: share pictures to the class gallery to draw them here."))
        return
    st.altair_chart(class_map_chart(class_map), use_container_width=True)
    spread = _("The two directions show {share} of the spread.").format(share=percent(class_map.explained_variance))
    st.caption(_(MAP_NOTE) + " " + spread)
    if class_map.left_out:
        left_off = _("{count} picture(s) of another size are left off: one map needs one size.")
        st.caption(left_off.format(count=number(class_map.left_out)))
