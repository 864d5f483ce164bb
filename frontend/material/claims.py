"""Sentences about what the model did, measured on the run on screen: every number in them comes from its trajectory.

A lesson states what the model does only where it can say it of the run the student is
looking at. The measures live here, apart from the pages, so a test can compute the same
measure from the same trajectory and check the sentence's numbers.
"""

from __future__ import annotations

import itertools

import numpy as np

from frontend.language import N_, _, ngettext, number, percent
from frontend.stream.wire import TrajectoryView
from services.common.api import pb


def sigma_form(info: pb.GetModelInfoResponse, run: TrajectoryView) -> bool:
    """Whether the run's scheduler carries x = x0 + sigma * eps (Euler, LMS, Euler Ancestral) rather than x_t."""
    name = run.request.scheduler or info.default_scheduler
    return any(s.name == name and s.sigma_space for s in info.schedulers)


def latent_sigmas(run: TrajectoryView) -> list[float]:
    """The sigma of each of `run.latents()`: step k's input sigma for the latent before it, 0 after the last."""
    return [float(step.sigma or 0.0) for step in run.steps] + [0.0]


def x_t_latents(run: TrajectoryView, in_sigma_form: bool) -> list[np.ndarray]:
    """x_t at every step from the noise. A sigma-form loop carries x = x_t * sqrt(1 + sigma^2): divided back here.

    Without this, a chart of x mostly shows sigma shrinking (x's spread starts near sigma, about 14.6 on SD).
    """
    latents = run.latents()
    if not in_sigma_form:
        return latents
    return [x / np.sqrt(1.0 + sigma**2) for x, sigma in zip(latents, latent_sigmas(run), strict=True)]


def rms_changes(arrays: list[np.ndarray]) -> list[float]:
    """Root-mean-square change per number from each array to the next."""
    return [float(np.sqrt(((b - a) ** 2).mean())) for a, b in itertools.pairwise(arrays)]


def rms_distances(a: list[np.ndarray], b: list[np.ndarray]) -> list[float]:
    """Root-mean-square difference per number between two runs' arrays, step by step."""
    return [float(np.sqrt(((x - y) ** 2).mean())) for x, y in zip(a, b, strict=True)]


def spacing(timesteps: list[float], train_steps: int) -> str:
    """Diffusers' name for how the visited noise levels were spread, read from the levels themselves ("" if none fits).

    linspace: evenly from t = N-1 to 0 (often fractional); leading: whole steps down to the offset
    (0 or 1); trailing: whole steps down from N-1.
    """
    if len(timesteps) < 2:
        return ""
    first, last = timesteps[0], timesteps[-1]
    if abs(first - (train_steps - 1)) < 1e-3 and abs(last) < 1e-3:
        return "linspace"
    whole = all(abs(t - round(t)) < 1e-3 for t in timesteps)
    if whole and last <= 1:
        return "leading"
    if whole and abs(first - (train_steps - 1)) < 1e-3:
        return "trailing"
    return ""


def _t(value: float) -> str:
    return number(round(value)) if abs(value - round(value)) < 1e-3 else number(value, digits=1)


def noise_levels_sentence(timesteps: list[float], train_steps: int) -> str:
    """Which of the trained noise levels the run visits, as the run's own timesteps show."""
    count = len(timesteps)
    whole = sum(abs(t - round(t)) < 1e-3 for t in timesteps)
    shown = ", ".join(_t(t) for t in timesteps[:6])
    if count > 6:
        shown = _("{levels} and so on").format(levels=shown)
    head = ngettext(
        "The model was trained on {trained} noise levels, t = 0 to {last}. This run visits {count} noise level, "
        "from t = {start} down to t = {end} ({shown}).",
        "The model was trained on {trained} noise levels, t = 0 to {last}. This run visits {count} noise levels, "
        "from t = {start} down to t = {end} ({shown}).",
        count,
    ).format(
        trained=number(train_steps),
        last=train_steps - 1,
        count=count,
        start=_t(timesteps[0]),
        end=_t(timesteps[-1]),
        shown=shown,
    )
    name = spacing(timesteps, train_steps)
    if whole == count:
        tail = (
            _('All {count} are trained levels: whole numbers (the scheduler\'s "{name}" spacing).')
            if name
            else _("All {count} are trained levels: whole numbers.")
        )
    else:
        tail = (
            _(
                "Only {count} of them are trained levels: the others fall between two (t is a fraction) (the "
                'scheduler\'s "{name}" spacing), where the scheduler reads the noise schedule in between.'
            )
            if name
            else _(
                "Only {count} of them are trained levels: the others fall between two (t is a fraction), where the "
                "scheduler reads the noise schedule in between."
            )
        )
    return head + " " + tail.format(count=whole, name=name)


def mean_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference between two RGB pictures, in brightness levels of 255 per colour channel."""
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def mean_saturation(picture: np.ndarray) -> float:
    """Mean colour saturation of an RGB picture, 0 (grey) to 1 (pure colour), as HSV measures it."""
    rgb = picture.astype(np.float64) / 255.0
    high, low = rgb.max(axis=-1), rgb.min(axis=-1)
    return float(np.where(high > 0, (high - low) / np.maximum(high, 1e-12), 0.0).mean())


NEXT_TO_NOTHING, A_LITTLE, CLEARLY = N_("next to nothing"), N_("a little"), N_("clearly")


def difference_words(levels: float) -> str:
    """How big a mean difference of `levels` (of 255) is, in words."""
    if levels < 2:
        return _(NEXT_TO_NOTHING)
    if levels < 10:
        return _(A_LITTLE)
    return _(CLEARLY)


def high_guidance_sentence(low: tuple[float, np.ndarray], high: tuple[float, np.ndarray]) -> str:
    """What raising g from `low` to `high` did to this prompt and seed's picture: difference and saturation."""
    (g_low, a), (g_high, b) = low, high
    levels = mean_difference(a, b)
    s_low, s_high = mean_saturation(a), mean_saturation(b)
    if abs(s_high - s_low) < 0.01:
        sentence = _(
            "On this model, with this prompt and seed, the pictures at g = {low} and g = {high} differ by {levels} "
            "of 255 brightness levels per pixel on average ({how}), and their colours are about as saturated "
            "({low_saturation} and {high_saturation})."
        )
    elif s_high > s_low:
        sentence = _(
            "On this model, with this prompt and seed, the pictures at g = {low} and g = {high} differ by {levels} "
            "of 255 brightness levels per pixel on average ({how}), and g = {high}'s colours are more saturated "
            "({high_saturation} against {low_saturation})."
        )
    else:
        sentence = _(
            "On this model, with this prompt and seed, the pictures at g = {low} and g = {high} differ by {levels} "
            "of 255 brightness levels per pixel on average ({how}), and g = {high}'s colours are less saturated "
            "({high_saturation} against {low_saturation})."
        )
    return sentence.format(
        low=number(g_low),
        high=number(g_high),
        levels=number(levels, digits=1),
        how=difference_words(levels),
        low_saturation=percent(s_low),
        high_saturation=percent(s_high),
    )


def half_way_step(values: list[float]) -> int:
    """The first index where a curve reaches half of its largest value (0 if it never rises)."""
    top = max(values, default=0.0)
    if top <= 0:
        return 0
    return next(index for index, value in enumerate(values) if value >= top / 2)


def parting_sentence(distances: list[float], decoded: list[float] | None) -> str:
    """When two runs of the same noise parted, from their distances at step 0 to n (and their decoded guesses')."""
    total = len(distances) - 1
    top = max(distances)
    peak = distances.index(top)
    sentence = _(
        "On this run the two latents are {start} apart at step 0, {first} after step 1 and {end} at the end; they "
        "are furthest apart at step {peak} ({top}) and reach half of that at step {half} of {total}."
    ).format(
        start=number(distances[0], digits=2),
        first=number(distances[1], digits=2),
        end=number(distances[-1], digits=2),
        peak=peak,
        top=number(top, digits=2),
        half=half_way_step(distances),
        total=total,
    )
    if decoded:  # the guesses' pictures, from step 1 (there is no guess before it)
        most = max(decoded)
        sentence += " " + _(
            "The two decoded guesses differ by {first} of 255 brightness levels per pixel at step 1, by {most} at "
            "most (step {step}) and by {end} at the end."
        ).format(
            first=number(decoded[0], digits=1),
            most=number(most, digits=1),
            step=1 + decoded.index(most),
            end=number(decoded[-1], digits=1),
        )
    return sentence


def settling_sentence(guess_changes: list[float], first_step: int = 2) -> str:
    """When the model's guess stopped moving much: its largest change per step, and from when each is under a tenth.

    `guess_changes[i]` is the change that step `first_step + i` made.
    """
    top = max(guess_changes)
    peak = first_step + guess_changes.index(top)
    last_big = max(i for i, change in enumerate(guess_changes) if change >= top / 10)
    quiet = first_step + last_big + 1
    total = first_step + len(guess_changes) - 1
    if quiet > total:
        return _(
            "On this run the guess's numbers change most at step {peak}, and still a lot at the last step."
        ).format(peak=peak)
    # The chart measures the guess's latent numbers: say so, since the decoded picture can still change visibly.
    return _(
        "On this run the guess's numbers change most at step {peak}; from step {quiet} of {total} on, every step "
        "changes them by less than a tenth of that (a small change in the latent can still reshape the decoded "
        "picture: watch the player)."
    ).format(peak=peak, quiet=quiet, total=total)
