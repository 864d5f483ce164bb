"""Measures behind the sentences of lessons 7 and 8: what the run on screen shows, in numbers.

A lesson's sentence about the model (where a word's attention goes, when a switched
prompt can no longer change the picture) is made here from the run it describes, so it
holds for the model on screen, Shapes or Stable Diffusion. The tests compute the same
measures from the same trajectories and check the sentences' numbers. Each sentence is one
whole template of the catalogs, its numbers and lists written as the reader's language writes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from frontend import language
from frontend.language import N_, _, ngettext

# -- lesson 8: when does the picture decide? ------------------------------------------

PROPERTIES = ("colour", "shape", "position")


def mean_distance(a: np.ndarray, b: np.ndarray) -> float:
    """How far two pictures of one size are apart: the mean difference of their pixels, in levels of 0-255."""
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


@dataclass(frozen=True)
class Settling:
    """One property of the switched pictures (colour, shape or position), as the judge saw it at each switch step."""

    name: str
    original: str  # the never-switched picture's
    new: str  # the picture switched at step 0: the new prompt's own
    seen: dict[int, str]  # switch step -> what the picture shows, for the steps switched before the end

    @property
    def settled_from(self) -> int | None:
        """The earliest switch step from which every later one keeps the original's value (None: not even the last)."""
        steps = sorted(self.seen)
        settled = None
        for k in reversed(steps):
            if self.seen[k] != self.original:
                break
            settled = k
        return settled


def settling(judged: Mapping[int, object], total: int) -> list[Settling]:
    """Colour, shape and position across switch steps, from judge verdicts by step (0 and `total` needed)."""

    def value(verdict: object, name: str) -> str:
        return getattr(verdict, name) if getattr(verdict, "found", False) else "no shape"

    switched = {k: v for k, v in judged.items() if 0 < k < total}
    return [
        Settling(
            name, value(judged[total], name), value(judged[0], name), {k: value(v, name) for k, v in switched.items()}
        )
        for name in PROPERTIES
    ]


# The judge's properties as a sentence names them (its first letter is raised where it opens one).
_PROPERTY = {"colour": N_("the colour"), "shape": N_("the shape"), "position": N_("the position")}


def _opening(sentence: str) -> str:
    return sentence[:1].upper() + sentence[1:]


def _seen(value: str) -> str:
    return _("no shape") if value == "no shape" else value  # the judge's words are the prompts' own, kept as such


def _join(words: Sequence[str], *, either: bool = False) -> str:
    """Words as a list in the reader's language: "a, b and c" (or "a, b or c")."""
    words = list(words)
    if len(words) == 1:
        return words[0]
    template = _("{items} or {last}") if either else _("{items} and {last}")
    return template.format(items=", ".join(words[:-1]), last=words[-1])


def _steps(steps: Sequence[int]) -> str:
    return _join([str(k) for k in steps], either=True)


def settling_sentences(properties: list[Settling], total: int) -> list[str]:
    """What the judge saw, property by property, in the words a student reads (one sentence each)."""
    sentences = []
    for p in properties:
        steps = sorted(p.seen)
        if not steps:
            continue
        name = _(_PROPERTY.get(p.name, p.name))
        if p.original == p.new:
            sentences.append(
                _opening(
                    _("{property} is the same in both prompts' pictures ({value}): nothing to decide.").format(
                        property=name, value=_seen(p.original)
                    )
                )
            )
            continue
        settled = p.settled_from
        latest = steps[-1]
        if settled is not None:
            before = [k for k in steps if k < settled]
            facts = {"property": name, "original": _seen(p.original), "step": settled, "total": total}
            seen = list(dict.fromkeys(p.seen[k] for k in before))
            if not before:
                text = _(
                    "{property} is the original's ({original}) when the switch comes at step {step} of {total} or "
                    "later."
                )
            elif seen == [p.new]:
                text = _(
                    "{property} is the original's ({original}) when the switch comes at step {step} of {total} or "
                    "later; switched at step {steps}, it is the new prompt's ({new})."
                )
            else:
                text = _(
                    "{property} is the original's ({original}) when the switch comes at step {step} of {total} or "
                    "later; switched at step {steps}, it is in turn {values}."
                )
            sentences.append(
                _opening(
                    text.format(**facts, steps=_steps(before), new=_seen(p.new), values=_join([_seen(v) for v in seen]))
                )
            )
        elif p.seen[latest] == p.new:
            sentences.append(
                _opening(
                    _(
                        "{property} still follows the new prompt ({new}) when the switch comes at step {step} of "
                        "{total}, the latest switch here."
                    ).format(property=name, new=_seen(p.new), step=latest, total=total)
                )
            )
        else:
            sentences.append(
                _(
                    "Switched at step {step} of {total}, the latest switch here, {property} is {value}: neither "
                    "prompt's."
                ).format(step=latest, total=total, property=name, value=_seen(p.seen[latest]))
            )
    return sentences


def nearer_sentence(distances: Mapping[int, tuple[float, float]], total: int) -> str:
    """Which picture each switched one is nearer: switch step -> (distance to the original, to the new one's)."""
    steps = sorted(k for k in distances if 0 < k < total)
    new = [k for k in steps if distances[k][1] < distances[k][0]]
    old = [k for k in steps if distances[k][1] >= distances[k][0]]
    if new and old:
        return _(
            "In pixels: switched at step {new}, the picture is nearer the new prompt's own (switched at 0); "
            "switched at step {old}, it is nearer the original (never switched)."
        ).format(new=_steps(new), old=_steps(old))
    if new:
        return _(
            "In pixels: switched at step {steps}, the picture is nearer the new prompt's own (switched at 0)."
        ).format(steps=_steps(new))
    if old:
        return _("In pixels: switched at step {steps}, it is nearer the original (never switched).").format(
            steps=_steps(old)
        )
    return ""


# -- lesson 7: which word paints where -------------------------------------------------


@dataclass(frozen=True)
class Shares:
    """Each kind of text position's share of the attention, over every latent position and step (they add up to 1)."""

    start: float
    words: float
    end: float
    padding: float
    word_count: int
    padding_count: int

    def largest(self) -> str:
        """Which kind gets the most, in the reader's language."""
        named = {N_("the start token"): self.start, N_("the prompt's words"): self.words,
                 N_("the end token"): self.end, N_("the padding"): self.padding}  # fmt: skip
        return _(max(named, key=named.__getitem__))


def shares(maps: np.ndarray, padding_count: int) -> Shares:
    """From maps [steps, kept tokens, h, w] (start, the prompt's pieces, end): the mean share of each kind.

    At every latent position the 77 shares add up to one, so what the kept tokens leave is the padding's.
    """
    mean = maps.astype(np.float64).mean(axis=(0, 2, 3))
    return Shares(
        start=float(mean[0]),
        words=float(mean[1:-1].sum()),
        end=float(mean[-1]),
        padding=max(0.0, 1.0 - float(mean.sum())),
        word_count=len(mean) - 2,
        padding_count=padding_count,
    )


def percent(share: float) -> str:
    """A share as a student reads it: whole percent, or "under 1%" rather than a misleading 0%."""
    if 0 < share < 0.005:
        return _("under {percent}").format(percent=language.percent(0.01))
    whole = int(f"{share * 100:.0f}")  # rounded as f"{share:.0%}" rounds it
    return language.percent(whole / 100)


def shares_sentence(s: Shares) -> str:
    """Where the attention goes on this run, kind by kind, in the reader's language."""
    return ngettext(
        "On this run, the start token gets {start} of the attention, the prompt's {count} piece {words} together, "
        "the end token {end}, and the {padding_count} padding positions after it {padding}.",
        "On this run, the start token gets {start} of the attention, the prompt's {count} pieces {words} together, "
        "the end token {end}, and the {padding_count} padding positions after it {padding}.",
        s.word_count,
    ).format(
        start=percent(s.start), count=s.word_count, words=percent(s.words), end=percent(s.end),
        padding_count=s.padding_count, padding=percent(s.padding),
    ) + " " + _("The most goes to {largest}.").format(largest=s.largest())  # fmt: skip


def half_mass_area(heat: np.ndarray) -> float:
    """The smallest share of the picture that holds half of a map's mass (0.5 for an even map, small when focused)."""
    values = np.sort(heat.astype(np.float64).ravel())[::-1]
    total = values.sum()
    if total <= 0:
        return 1.0
    cells = int(np.searchsorted(np.cumsum(values), total / 2)) + 1
    return cells / values.size


def on_mask(heat: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """The share of a map's mass on the mask's pixels, and the mask's share of the picture.

    The map [h, w] is spread evenly over the picture's pixels (each cell over its block), as the overlay shows it.
    """
    factor = mask.shape[0] // heat.shape[0], mask.shape[1] // heat.shape[1]
    spread = np.kron(heat.astype(np.float64), np.ones(factor)) / (factor[0] * factor[1])
    total = spread.sum()
    return (float(spread[mask].sum() / total) if total > 0 else 0.0), float(mask.mean())


def alike(a: np.ndarray, b: np.ndarray) -> float:
    """How alike two maps' patterns are: the correlation of their cells (1: the same pattern; 0: unrelated)."""
    x, y = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    if x.std() == 0 or y.std() == 0:
        return 0.0
    return float(np.corrcoef(x, y)[0, 1])


# -- drawing a map without changing the picture's colours --------------------------------

# Viridis (colour-blind safe, dark to light), at nine evenly spaced points.
_VIRIDIS = np.array(
    [[68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
     [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37]],
    dtype=np.float32,
)  # fmt: skip
TIMES_EVEN = 4.0  # the ramp's top: a cell with 4 times the even share (or more) is drawn the lightest


def viridis(level: np.ndarray) -> np.ndarray:
    """Levels in [0, 1] as viridis colours, [..., 3] float."""
    position = np.clip(level, 0, 1) * (len(_VIRIDIS) - 1)
    low = np.floor(position).astype(int).clip(0, len(_VIRIDIS) - 2)
    fraction = (position - low)[..., None]
    return _VIRIDIS[low] * (1 - fraction) + _VIRIDIS[low + 1] * fraction


def times_even(heat: np.ndarray) -> np.ndarray:
    """Each cell's value over the map's mean: 1 where a word is read as much as an even spread would give."""
    mean = float(heat.mean())
    return heat / mean if mean > 0 else np.zeros_like(heat)


def legend(width: int = 256, height: int = 14) -> np.ndarray:
    """The ramp from 0 to TIMES_EVEN times the even share, as a picture strip."""
    return np.repeat(viridis(np.linspace(0, 1, width))[None], height, axis=0).astype(np.uint8)
