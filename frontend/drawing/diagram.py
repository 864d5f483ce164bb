"""A box-and-arrow diagram drawn as SVG on the server: rows of boxes, each row a stage, arrows between boxes.

The page shows the SVG inline (`show`), so the student's browser only paints it: no layout
engine runs there (a graphviz chart is laid out in the browser by a 770 KB WebAssembly
Graphviz, seconds of a Chromebook's CPU). The layout is simple and fixed: each row left to
right, rows top to bottom, centred; a box as wide as its longest line. Text widths are
estimated from the number of characters, on the generous side, and the SVG scales down to
the page's width (never wider than drawn), so longer words in a translation still fit.

The diagram carries its own words: `description`, the caller's (translated) sentence of what
it shows, is the SVG's text alternative (role "img"); every box and stage is named in words,
so colour is never the only signal; the text is dark on light fills on a white card, in
either theme.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import streamlit as st

FONT, LINE = 15, 19  # a box's words: size and line height, in the SVG's pixels
SMALL, SMALL_LINE = 13, 16  # an arrow's words
TITLE = 16  # a stage's name
EM = 0.5  # a character's width, in font sizes: generous for a sans-serif (Streamlit's averages about 0.42)
PAD_X, PAD_Y = 12, 8  # inside a box
BAND_PAD, BAND_TITLE = 12, 26  # inside a stage's band; the band's room above its boxes for its name
MARGIN, MIN_GAP, ROW_GAP = 10, 40, 36  # around the diagram; between boxes; between rows (at least)
DROP = 16  # how far below its row an arrow back along the row runs
HEAD = 8  # an arrowhead's length
INK, EDGE, BOX_LINE = "#1f2937", "#4b5563", "#4b5563"  # 14:1, 7.6:1 and 7.6:1 on white


@dataclass(frozen=True)
class Box:
    """One part: its words (a line each), its fill. A note is what goes in or comes out, beside the band."""

    name: str
    text: str
    fill: str = "#ffffff"
    note: bool = False


@dataclass(frozen=True)
class Row:
    """One stage: its boxes left to right, and its band (name, fill, border) around the boxes that are not notes."""

    title: str
    boxes: tuple[Box, ...]
    fill: str = "#f9fafb"
    border: str = "#9ca3af"


@dataclass(frozen=True)
class Arrow:
    """From one box to another, with words on it. `back`: dashed, back along the row, under it (a loop)."""

    source: str
    target: str
    label: str = ""
    back: bool = False


@dataclass
class _Placed:
    box: Box
    row: int
    x: float = 0.0
    y: float = 0.0
    w: float = 0.0
    h: float = 0.0
    dy: float = 0.0  # below the row's top: a box lower than its row's highest is centred in the row

    @property
    def cx(self) -> float:
        return self.x + self.w / 2


def _width(text: str, size: float) -> float:
    return max((len(line) for line in text.split("\n")), default=0) * size * EM


def _lines(text: str) -> int:
    return len(text.split("\n")) if text else 0


def _text(x: float, y: float, text: str, size: int, line: int, anchor: str = "middle", weight: str = "") -> str:
    """Words centred on (x, y) vertically, a line per line break."""
    rows = text.split("\n")
    top = y - line * (len(rows) - 1) / 2
    spans = "".join(
        f'<tspan x="{x:.1f}" y="{top + i * line:.1f}">{html.escape(row)}</tspan>' for i, row in enumerate(rows)
    )
    bold = f' font-weight="{weight}"' if weight else ""
    return (
        f'<text font-size="{size}" fill="{INK}" text-anchor="{anchor}" dominant-baseline="central"{bold}>{spans}</text>'
    )


def _label(x: float, y: float, text: str) -> str:
    """An arrow's words on a white patch, centred on (x, y)."""
    w, h = _width(text, SMALL) + 8, _lines(text) * SMALL_LINE + 4
    patch = f'<rect x="{x - w / 2:.1f}" y="{y - h / 2:.1f}" width="{w:.1f}" height="{h:.1f}" fill="#ffffff"/>'
    return patch + _text(x, y, text, SMALL, SMALL_LINE)


def _head(x: float, y: float, dx: float, dy: float) -> str:
    """An arrowhead with its tip at (x, y), pointing along (dx, dy), a unit vector."""
    bx, by, half = x - dx * HEAD, y - dy * HEAD, HEAD * 0.55
    points = f"{x:.1f},{y:.1f} {bx - dy * half:.1f},{by + dx * half:.1f} {bx + dy * half:.1f},{by - dx * half:.1f}"
    return f'<polygon points="{points}" fill="{EDGE}"/>'


def _path(points: list[tuple[float, float]], dashed: bool = False) -> str:
    """A line through `points` ending in an arrowhead (the last segment must be horizontal or vertical)."""
    (x1, y1), (x2, y2) = points[-2], points[-1]
    length = max(abs(x2 - x1) + abs(y2 - y1), 1e-6)
    dx, dy = (x2 - x1) / length, (y2 - y1) / length
    end = (x2 - dx * HEAD, y2 - dy * HEAD)  # the line stops where the head begins
    d = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate([*points[:-1], end]))
    dash = ' stroke-dasharray="6 4"' if dashed else ""
    return f'<path d="{d}" fill="none" stroke="{EDGE}" stroke-width="1.5"{dash}/>' + _head(x2, y2, dx, dy)


def _box(p: _Placed) -> str:
    x, y, w, h = p.x, p.y, p.w, p.h
    if p.box.note:  # a page with its corner folded
        f = 10
        shape = (
            f'<path d="M{x:.1f},{y:.1f} H{x + w - f:.1f} L{x + w:.1f},{y + f:.1f} V{y + h:.1f} H{x:.1f} Z" '
            f'fill="{p.box.fill}" stroke="{BOX_LINE}"/>'
            f'<path d="M{x + w - f:.1f},{y:.1f} V{y + f:.1f} H{x + w:.1f}" fill="none" stroke="{BOX_LINE}"/>'
        )
    else:
        shape = (
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" rx="6" '
            f'fill="{p.box.fill}" stroke="{BOX_LINE}"/>'
        )
    return shape + _text(p.cx, y + h / 2, p.box.text, FONT, LINE)


def svg(rows: list[Row], arrows: list[Arrow], description: str) -> str:
    """The diagram as one <svg> element, its text alternative `description`."""
    placed = {box.name: _Placed(box, r) for r, row in enumerate(rows) for box in row.boxes}
    for p in placed.values():
        p.w = _width(p.box.text, FONT) + 2 * PAD_X
        p.h = _lines(p.box.text) * LINE + 2 * PAD_Y
    across = {(a.source, a.target): a for a in arrows if not a.back and placed[a.source].row == placed[a.target].row}
    back = [a for a in arrows if a.back]
    down = [a for a in arrows if placed[a.source].row != placed[a.target].row]

    # 1. Each row laid out left to right from 0; its band around the boxes that are not notes.
    widths, heights, bands = [], [], []
    for r, row in enumerate(rows):
        x, band = 0.0, [None, None]
        height = max(placed[b.name].h for b in row.boxes)
        for i, b in enumerate(row.boxes):
            p = placed[b.name]
            if i:
                before = row.boxes[i - 1]
                arrow = across.get((before.name, b.name))
                gap = max(MIN_GAP, _width(arrow.label, SMALL) + 24) if arrow else MIN_GAP / 2
                if b.note != before.note:
                    gap += BAND_PAD  # a band's edge lies in this gap: the arrow keeps its length outside the band
                x += gap
            if not b.note and band[0] is None:
                x += 0 if i else BAND_PAD
                band[0] = x - BAND_PAD
            p.x, p.dy = x, (height - p.h) / 2
            x += p.w
            if not b.note:
                band[1] = x + BAND_PAD
        if not row.boxes[-1].note:
            x += BAND_PAD
        loop = max((_lines(a.label) * SMALL_LINE for a in back if placed[a.source].row == r), default=None)
        below = BAND_PAD if loop is None else DROP + loop + 10
        widths.append(max(x, band[1] or 0, (band[0] or 0) + _width(row.title, TITLE) + 2 * BAND_PAD))
        heights.append((height, below))
        bands.append(band)

    # 2. Rows stacked and centred; between two rows room for the words of the arrows that cross it.
    width = max(widths) + 2 * MARGIN
    top, tops = MARGIN, []
    for r in range(len(rows)):
        if r:
            crossing = [a for a in down if placed[a.source].row == r - 1]
            top += max(ROW_GAP, max((_lines(a.label) * SMALL_LINE + 20 for a in crossing), default=0))
        tops.append(top)
        top += BAND_TITLE + heights[r][0] + heights[r][1]
    height = top + MARGIN
    parts = [f'<rect width="{width:.1f}" height="{height:.1f}" rx="8" fill="#ffffff"/>']
    title_ends = [0.0] * len(rows)  # where each band's name ends: an arrow coming down into the row passes right of it
    for r, row in enumerate(rows):
        shift = (width - widths[r]) / 2
        for b in row.boxes:
            p = placed[b.name]
            p.x += shift
            p.y = tops[r] + BAND_TITLE + p.dy
        left, right = bands[r]
        if left is not None:
            title_ends[r] = left + shift + BAND_PAD + _width(row.title, TITLE) + 8
            band_h = BAND_TITLE + heights[r][0] + heights[r][1]
            parts.append(
                f'<rect x="{left + shift:.1f}" y="{tops[r]:.1f}" width="{right - left:.1f}" height="{band_h:.1f}" '
                f'rx="10" fill="{row.fill}" stroke="{row.border}" stroke-width="1.5"/>'
            )
            parts.append(
                _text(left + shift + BAND_PAD, tops[r] + BAND_TITLE / 2, row.title, TITLE, LINE, "start", "600")
            )

    # 3. The arrows under the boxes, then the boxes, then the arrows' words on top.
    words = []
    for (source, target), a in across.items():
        s, t = placed[source], placed[target]
        y = s.y + s.h / 2
        parts.append(_path([(s.x + s.w, y), (t.x, y)]))
        if a.label:
            words.append(_text((s.x + s.w + t.x) / 2, y - 6 - _lines(a.label) * SMALL_LINE / 2, a.label, SMALL,
                               SMALL_LINE))  # fmt: skip
    for a in back:  # out of the source's bottom (left part), along under the row, up into the target
        s, t = placed[a.source], placed[a.target]
        row_bottom = tops[s.row] + BAND_TITLE + heights[s.row][0]
        x1, y = s.x + s.w * 0.3, row_bottom + DROP
        parts.append(_path([(x1, s.y + s.h), (x1, y), (t.cx, y), (t.cx, t.y + t.h)], dashed=True))
        if a.label:
            words.append(_text((x1 + t.cx) / 2, y + 6 + _lines(a.label) * SMALL_LINE / 2, a.label, SMALL, SMALL_LINE))
    for a in down:  # out of the source's bottom, across the gap between the rows, into the target's top
        s, t = placed[a.source], placed[a.target]
        gap_top = tops[s.row] + BAND_TITLE + sum(heights[s.row])
        middle = (gap_top + tops[t.row]) / 2
        x2 = t.cx if t.cx > title_ends[t.row] else min(title_ends[t.row], t.x + t.w - 12)
        parts.append(_path([(s.cx, s.y + s.h), (s.cx, middle), (x2, middle), (x2, t.y)]))
        if a.label:
            words.append(_label((s.cx + x2) / 2, middle, a.label))
    parts += [_box(p) for p in placed.values()]
    parts += words
    # The opening tag on a line of its own and no blank line after it: markdown passes the element on untouched.
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="classroom-diagram" role="img" '
        f'aria-label="{html.escape(description, quote=True)}" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'width="{width:.0f}" height="{height:.0f}" style="max-width:100%;height:auto;display:block">\n'
        + "".join(parts)
        + "\n</svg>"
    )


def show(rows: list[Row], arrows: list[Arrow], description: str) -> None:
    """Draw the diagram in the page, inline: the browser paints an SVG and lays nothing out.

    Through markdown, not `st.html`: Streamlit cleans `st.html` with DOMPurify's HTML profile,
    which drops every SVG element. Every word in the SVG is escaped (`svg`).
    """
    st.markdown(svg(rows, arrows, description), unsafe_allow_html=True)
