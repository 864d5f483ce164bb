"""Charts over the steps of a run, with the step the student is looking at marked on each."""

from __future__ import annotations

import altair as alt
import pandas as pd

# Two colours told apart by everyone, colour-blind students included (orange and violet),
# matching Streamlit's markdown colours of the same names for labels beside the chart.
PAIR_COLOURS = ("#e66101", "#5e3c99")
MARKDOWN_COLOURS = ("orange", "violet")
CURRENT_STEP_COLOUR = "#d62728"


def current_step_rule(step: int) -> alt.LayerChart:
    """A dashed vertical line at the current step, labelled, to lay over a chart whose x is "step"."""
    mark = pd.DataFrame({"step": [step], "label": [f"step {step}"]})
    rule = alt.Chart(mark).mark_rule(color=CURRENT_STEP_COLOUR, strokeDash=[4, 3], strokeWidth=2).encode(x="step:Q")
    label = (
        alt.Chart(mark)
        .mark_text(color=CURRENT_STEP_COLOUR, align="left", dx=4, baseline="top", y=2)
        .encode(x="step:Q", text="label:N")
    )
    return rule + label


def per_step(data: pd.DataFrame, step: int, y_title: str, colours: tuple[str, ...] | None = None) -> alt.LayerChart:
    """Lines over the steps, one per series, with the current step marked.

    `data` is long: columns "step", "value" and "series" (the legend's labels, shown whole).
    Up to two series get the pair's two colours unless `colours` says otherwise.
    Field names stay plain words: Vega reads quotes, dots and brackets in them as paths.
    """
    series = list(dict.fromkeys(data["series"]))
    colours = colours or (PAIR_COLOURS if len(series) <= len(PAIR_COLOURS) else None)
    scale = alt.Scale(domain=series, range=list(colours[: len(series)])) if colours else alt.Undefined
    lines = (
        alt.Chart(data)
        .mark_line(point=True)
        .encode(
            x=alt.X("step:Q", title="step", axis=alt.Axis(tickMinStep=1)),
            y=alt.Y("value:Q", title=y_title),
            color=alt.Color(
                "series:N",
                scale=scale,
                sort=series,
                legend=alt.Legend(orient="bottom", direction="vertical", title=None, labelLimit=0),
            ),
            tooltip=[alt.Tooltip("series:N", title="line"), "step:Q", alt.Tooltip("value:Q", format=".4f")],
        )
    )
    return lines + current_step_rule(step)
