"""Charts over the steps of a run, with the step the student is looking at marked on each.

Their words (axis titles, the step's label, the text alternatives) are in the session's
language; a cached spec is kept per language.
"""

from __future__ import annotations

import copy
import functools
import json
from typing import Any

import altair as alt
import pandas as pd

from frontend.language import N_, current_language, translate
from frontend.language import number as written

# Two colours told apart by everyone, colour-blind students included (orange and violet),
# matching Streamlit's markdown colours of the same names for labels beside the chart.
PAIR_COLOURS = ("#e66101", "#5e3c99")
MARKDOWN_COLOURS = ("orange", "violet")
CURRENT_STEP_COLOUR = "#d62728"


def current_step_rule(step: int, language: str | None = None) -> alt.LayerChart:
    """A dashed vertical line at the current step, labelled, to lay over a chart whose x is "step"."""
    label = translate(N_("step {step}"), language or current_language()).format(step=written(step, language=language))
    mark = alt.InlineData(values=[{"step": step, "label": label}])
    rule = alt.Chart(mark).mark_rule(color=CURRENT_STEP_COLOUR, strokeDash=[4, 3], strokeWidth=2).encode(x="step:Q")
    label = (
        alt.Chart(mark)
        .mark_text(color=CURRENT_STEP_COLOUR, align="left", dx=4, baseline="top", y=2)
        .encode(x="step:Q", text="label:N")
    )
    return rule + label


SpecDict = dict[str, Any]


def number(value: float, language: str | None = None) -> str:
    """A value as a sentence says it: three significant figures, written as the language writes numbers."""
    text = f"{value:.3g}"
    if "e" in text or "n" in text:  # a power of ten, inf, nan: as Python writes it
        return text
    return written(float(text), len(text.partition(".")[2]), language)


def lines_in_words(records: list[dict[str, Any]], y_title: str, step: int, language: str | None = None) -> str:
    """What a chart over the steps shows, in words (its text alternative): each line's start, end and highest point."""
    language = language or current_language()
    parts = []
    for series in dict.fromkeys(record["series"] for record in records):
        points = sorted((r["step"], r["value"]) for r in records if r["series"] == series and r["value"] is not None)
        if not points:
            continue
        (first_step, first), (last_step, last) = points[0], points[-1]
        top_step, top = max(points, key=lambda point: point[1])
        line = N_(
            "{series}: {first} at step {first_step}, {last} at step {last_step}, highest {top} at step {top_step}"
        )
        parts.append(
            translate(line, language).format(
                series=series, first=number(first, language), first_step=written(first_step, language=language),
                last=number(last, language), last_step=written(last_step, language=language),
                top=number(top, language), top_step=written(top_step, language=language),
            )
        )  # fmt: skip
    chart = translate(N_("Line chart of {y_title} at each step, step {step} marked. {lines}."), language)
    return chart.format(y_title=y_title, step=written(step, language=language), lines="; ".join(parts))


def positions_in_words(what: str, values: Any) -> str:
    """A chart over a prompt's positions in words: how many, the first and last values, the highest and lowest."""
    language = current_language()
    numbers = [float(value) for value in values]
    if not numbers:
        return translate(N_("{what}: no positions."), language).format(what=what)
    high = max(range(len(numbers)), key=numbers.__getitem__)
    low = min(range(len(numbers)), key=numbers.__getitem__)
    sentence = translate(
        N_(
            "{what} at positions 0 to {last_position}: {first} at position 0, {last} at the last; "
            "highest {high} at position {high_position}, lowest {low} at position {low_position}."
        ),
        language,
    )
    return sentence.format(
        what=what, last_position=written(len(numbers) - 1, language=language), first=number(numbers[0], language),
        last=number(numbers[-1], language), high=number(numbers[high], language),
        high_position=written(high, language=language), low=number(numbers[low], language),
        low_position=written(low, language=language),
    )  # fmt: skip


def per_step(data: pd.DataFrame, step: int, y_title: str, colours: tuple[str, ...] | None = None) -> SpecDict:
    """Lines over the steps, one per series, with the current step marked: a Vega-Lite spec for `st.vega_lite_chart`.

    `data` is long: columns "step", "value" and "series" (the legend's labels, shown whole).
    Up to two series get the pair's two colours unless `colours` says otherwise.
    Field names stay plain words: Vega reads quotes, dots and brackets in them as paths.

    The spec is made once for the whole process for each data and step: Altair checks
    every spec against the Vega-Lite schema, which took a third of a lesson's script
    run, and a class opening one lesson asks for the same chart thirty times.
    """
    spec = _per_step_spec(data.to_json(orient="records"), step, y_title, colours, current_language())
    return copy.deepcopy(spec)


@functools.lru_cache(maxsize=256)
def _per_step_spec(rows: str, step: int, y_title: str, colours: tuple[str, ...] | None, language: str) -> SpecDict:
    # The rows inline (they are also the cache's key): a data frame would go through Altair's global
    # data transformer, which st.altair_chart switches for its own charts while other sessions draw theirs.
    records = json.loads(rows)
    series = list(dict.fromkeys(record["series"] for record in records))
    colours = colours or (PAIR_COLOURS if len(series) <= len(PAIR_COLOURS) else None)
    scale = alt.Scale(domain=series, range=list(colours[: len(series)])) if colours else alt.Undefined
    lines = (
        alt.Chart(alt.InlineData(values=records))
        .mark_line(point=True)
        .encode(
            x=alt.X("step:Q", title=translate(N_("step"), language), axis=alt.Axis(tickMinStep=1)),
            y=alt.Y("value:Q", title=y_title),
            color=alt.Color(
                "series:N",
                scale=scale,
                sort=series,
                legend=alt.Legend(orient="bottom", direction="vertical", title=None, labelLimit=0),
            ),
            tooltip=[
                alt.Tooltip("series:N", title=translate(N_("line"), language)),
                "step:Q",
                alt.Tooltip("value:Q", format=".4f"),
            ],
        )
    )
    # Its words travel with it: Vega gives the chart's box role="graphics-document" and this as its aria-label.
    described = lines_in_words(records, y_title, step, language)
    spec = (lines + current_step_rule(step, language)).properties(description=described).to_dict()
    spec.pop("config", None)  # Altair's default theme (a fixed size); the page sizes the chart, as st.altair_chart does
    return spec
