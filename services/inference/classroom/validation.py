"""Checking requests up front, in one place, with messages a student can act on."""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass

from services.common.api import pb
from services.common.i18n import N_, Sentence
from services.common.include_mask import ON_REQUEST_PROBES
from services.common.text import hidden_characters, name_problem
from services.inference.classroom.sentences import (
    FEWER_STEPS,
    LEAVE_OUT,
    SIZE_SENTENCES,
    SMALLER,
    TEXT_SENTENCES,
    TOO_MUCH_WORK,
)
from services.inference.diffusion.jobs import Requester
from services.inference.diffusion.probes import DEFAULT_PROBES, PROBES
from services.inference.diffusion.schedulers import SCHEDULERS
from services.inference.diffusion.spec import BranchSpec, GenerationSpec, standard_work, work_of
from services.inference.moderation import Blocklist
from services.inference.refusals import BlockedPrompt, RequestError
from services.inference.settings import InferenceSettings

MAX_SEED = 2**32 - 1
SIZE_MULTIPLE = 8
MAX_INCLUDE_PATHS = 16
_ECHO_LIMIT = 40  # characters of a wrong value repeated back in an error


def _echo(value: str) -> str:
    """A value a client sent, safe to repeat in a sentence: short, and with no control characters."""
    shown = "".join(c if c.isprintable() else "?" for c in value[:_ECHO_LIMIT])
    return repr(shown + ("..." if len(value) > _ECHO_LIMIT else ""))


def _check_text(field: str, text: str, limit: int) -> list[tuple[str, str]]:
    too_long, invisible = TEXT_SENTENCES[field]
    if len(text) > limit:
        return [(field, Sentence(too_long, length=len(text), limit=limit))]
    hidden = hidden_characters(text, allow_newlines=True)
    if hidden:
        return [(field, Sentence(invisible, characters=", ".join(hidden[:3])))]
    return []


def check_name(name: str) -> str:
    """A display name as the teacher's page may show it (empty: none given); raises RequestError."""
    name = name.strip()
    problem = name_problem(name) if name else None
    if problem:
        raise RequestError([("name", problem)])
    return name


def check_prompt(prompt: str, settings: InferenceSettings, *, required: bool = True) -> None:
    """Check a prompt on its own (Tokenize and EncodePrompt accept the empty prompt)."""
    violations = _check_text("prompt", prompt, settings.max_prompt_chars)
    if required and not prompt.strip():
        violations.append(("prompt", Sentence(N_("Please type a prompt: it is empty."))))
    if violations:
        raise RequestError(violations)


@dataclass(frozen=True)
class Limits:
    """What a request may ask of the loaded model: the service's settings, narrowed to the model.

    A model paints well near the size it was trained at (its native size): Shapes learned
    64-pixel pictures and at 512 px paints noise (and takes 37 s on a CPU), so a side may be
    at most `settings.max_size_factor` times the native size (Shapes 128, SD 1.5 1024), and
    never more than `settings.max_size`. A model card may lower the step limit.
    """

    min_steps: int
    max_steps: int
    min_size: int
    max_size: int
    native_size: int  # the width and height the model was trained at (its default)
    max_guidance_scale: float
    max_prompt_chars: int
    # Schedulers the model's card leaves out, each with the sentence a refusal gives.
    schedulers_left_out: tuple[tuple[str, str], ...] = ()

    @property
    def schedulers(self) -> list[str]:
        """The schedulers offered on this model, in SCHEDULERS' order."""
        left_out = dict(self.schedulers_left_out)
        return [name for name in SCHEDULERS if name not in left_out]

    @classmethod
    def for_model(
        cls,
        settings: InferenceSettings,
        native_size: int,
        max_steps: int | None = None,
        schedulers_left_out: tuple[tuple[str, str], ...] = (),
    ) -> Limits:
        """The limits for a model trained at `native_size` pixels whose card caps steps at `max_steps`."""
        largest = min(settings.max_size, settings.max_size_factor * native_size)
        largest -= largest % SIZE_MULTIPLE
        return cls(
            min_steps=settings.min_steps,
            max_steps=min(settings.max_steps, max_steps) if max_steps else settings.max_steps,
            min_size=settings.min_size,
            max_size=max(settings.min_size, largest),
            native_size=native_size,
            max_guidance_scale=settings.max_guidance_scale,
            max_prompt_chars=settings.max_prompt_chars,
            schedulers_left_out=schedulers_left_out,
        )

    def to_proto(self) -> pb.Limits:
        return pb.Limits(
            min_steps=self.min_steps,
            max_steps=self.max_steps,
            min_guidance_scale=0.0,
            max_guidance_scale=self.max_guidance_scale,
            min_size=self.min_size,
            max_size=self.max_size,
            size_multiple=SIZE_MULTIPLE,
            max_prompt_chars=self.max_prompt_chars,
            max_seed=MAX_SEED,
        )


def _size(field: str, value: int, default: int, limits: Limits, out: list[tuple[str, str]]) -> int:
    if value == 0:
        return default
    lo, hi = limits.min_size, limits.max_size
    if value % SIZE_MULTIPLE or not lo <= value <= hi:
        within, too_big = SIZE_SENTENCES[field]
        sentence = too_big if value > hi else within
        args = {"multiple": SIZE_MULTIPLE, "smallest": lo, "largest": hi, "native": limits.native_size}
        out.append((field, Sentence(sentence, **args, **{field: value})))
    return value


def check_generate(
    request: pb.GenerateRequest,
    settings: InferenceSettings,
    default_size: int,
    blocklist: Blocklist | None = None,
    limits: Limits | None = None,
    default_include: frozenset[str] = DEFAULT_PROBES,
) -> GenerationSpec:
    """Turn a GenerateRequest into a GenerationSpec, or raise RequestError listing every problem.

    `limits`: the loaded model's (`Limits.for_model`); unset, those of a model trained at `default_size`.
    """
    limits = limits or Limits.for_model(settings, default_size)
    out: list[tuple[str, str]] = []
    try:
        check_prompt(request.prompt, settings)
    except RequestError as error:
        out += error.violations
    out += _check_text("negative_prompt", request.negative_prompt, settings.max_prompt_chars)

    steps = request.num_inference_steps or settings.default_steps
    if not limits.min_steps <= steps <= limits.max_steps:
        out.append(
            (
                "num_inference_steps",
                Sentence(
                    N_("Steps must be between {fewest} and {most} on this model; you asked for {steps}."),
                    fewest=limits.min_steps,
                    most=limits.max_steps,
                    steps=steps,
                ),
            )
        )

    guidance = request.guidance_scale if request.HasField("guidance_scale") else settings.default_guidance_scale
    if not (math.isfinite(guidance) and 0.0 <= guidance <= settings.max_guidance_scale):
        out.append(
            (
                "guidance_scale",
                Sentence(
                    N_("The guidance scale must be a number from 0 to {largest_scale}; you asked for {scale}."),
                    largest_scale=f"{settings.max_guidance_scale:g}",
                    scale=f"{guidance:g}",
                ),
            )
        )

    width = _size("width", request.width, default_size, limits, out)
    height = _size("height", request.height, default_size, limits, out)

    scheduler = request.scheduler or settings.default_scheduler
    if scheduler not in SCHEDULERS:
        offered = ", ".join(limits.schedulers)
        no_such = N_("There is no scheduler called {name}. Choose one of: {offered}.")
        out.append(("scheduler", Sentence(no_such, name=_echo(scheduler), offered=offered)))
    elif scheduler not in limits.schedulers:
        out.append(("scheduler", _card_sentence(dict(limits.schedulers_left_out)[scheduler])))

    if request.HasField("seed"):
        seed = request.seed
        if not 0 <= seed <= MAX_SEED:
            seed_range = N_("The seed must be a whole number from 0 to {max_seed}; you asked for {seed}.")
            out.append(("seed", Sentence(seed_range, max_seed=MAX_SEED, seed=seed)))
    else:
        seed = random.SystemRandom().randint(0, MAX_SEED)

    include = frozenset(request.include.paths) or default_include  # the server's (probes.default_probes)
    unknown = sorted(include - PROBES.keys())
    if len(request.include.paths) > MAX_INCLUDE_PATHS:
        out.append(("include", Sentence(N_("The include mask may name at most {most} paths."), most=MAX_INCLUDE_PATHS)))
    elif unknown:
        out.append(
            (
                "include",
                Sentence(
                    N_("The include mask names {names}, which a step does not have. Choose from: {offered}."),
                    names=", ".join(map(_echo, unknown[:3])),
                    offered=", ".join(PROBES),
                ),
            )
        )

    branch = _check_branch(request, steps, float(guidance), settings, out) if request.HasField("branch") else None

    if out:
        raise RequestError(out)
    _check_work(steps, width, height, include, settings, limits, default_include)
    # The negative prompt too: at guidance 0 the picture is the negative prompt's. And a branch's texts.
    texts = [request.prompt, request.negative_prompt]
    if branch is not None:
        texts += [branch.prompt, branch.negative_prompt]
    if blocklist is not None and any(blocklist.blocks(text) for text in texts):
        raise BlockedPrompt
    return GenerationSpec(
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        seed=seed,
        steps=steps,
        guidance_scale=float(guidance),
        width=width,
        height=height,
        scheduler=scheduler,
        include=include,
        branch=branch,
    )


def _card_sentence(text: str) -> str:
    """A model card's sentence (English, from its `classroom.json`), sent as its own template.

    The catalogs hold the sentences of the cards shipped (`frontend/locales/update.py`,
    `MODEL_CARDS`), so the student reads them in their language; another card's arrive in
    English. A sentence with braces could not be a template: it is sent as plain text.
    """
    return text if "{" in text or "}" in text else Sentence(text)


def _check_work(
    steps: int,
    width: int,
    height: int,
    include: frozenset[str],
    settings: InferenceSettings,
    limits: Limits,
    default_include: frozenset[str],
) -> None:
    """One request may cost at most `settings.max_request_work` standard pictures, even on an idle server.

    Within the limits on steps and size a request can still hold the GPU for many
    classmates' pictures (Shapes: 100 steps at 128 px with both costly probes is 20).
    The refusal says by how much, then names what to lower and to what, each a sentence of its own
    (a template with its numbers, so every language orders its own words).
    """
    standard = standard_work(settings, limits.native_size, default_include)
    price = work_of(steps, width, height, include) / standard
    ceiling = settings.max_request_work
    if price <= ceiling:
        return
    budget = ceiling * standard / work_of(1, 1, 1, include)  # steps x pixels that fit, with these probes
    sentences = [
        Sentence(
            TOO_MUCH_WORK,
            price=f"{price:.0f}",
            standard_steps=settings.default_steps,
            native=limits.native_size,
            ceiling=f"{ceiling:g}",
        )
    ]
    most_steps = math.floor(budget / (width * height))
    if most_steps >= limits.min_steps:
        sentences.append(Sentence(FEWER_STEPS, most_steps=most_steps))
    side = math.isqrt(math.floor(budget / steps))
    side -= side % SIZE_MULTIPLE
    if limits.min_size <= side < max(width, height):
        sentences.append(Sentence(SMALLER, side=side, steps=steps))
    extras = frozenset(include & ON_REQUEST_PROBES - default_include)
    if extras:
        sentences.append(Sentence(LEAVE_OUT[extras]))
    raise RequestError([("num_inference_steps", sentence) for sentence in sentences])


def _check_branch(
    request: pb.GenerateRequest, steps: int, guidance: float, settings: InferenceSettings, out: list[tuple[str, str]]
) -> BranchSpec | None:
    """The branch a request asks for, defaults filled in from the request; problems go to `out`."""
    branch = request.branch
    if not 0 <= branch.at_step <= steps:
        out.append(
            (
                "branch.at_step",
                Sentence(
                    N_("A branch must start at a step from 0 to {steps}; you asked for {at_step}."),
                    steps=steps,
                    at_step=branch.at_step,
                ),
            )
        )
    prompt = branch.prompt if branch.HasField("prompt") else request.prompt
    negative = branch.negative_prompt if branch.HasField("negative_prompt") else request.negative_prompt
    out += _check_text("branch.prompt", prompt, settings.max_prompt_chars)
    if not prompt.strip():
        out.append(("branch.prompt", Sentence(N_("Please type the prompt the branch changes to: it is empty."))))
    out += _check_text("branch.negative_prompt", negative, settings.max_prompt_chars)
    scale = branch.guidance_scale if branch.HasField("guidance_scale") else guidance
    if not (math.isfinite(scale) and 0.0 <= scale <= settings.max_guidance_scale):
        out.append(
            (
                "branch.guidance_scale",
                Sentence(
                    N_(
                        "The branch's guidance scale must be a number from 0 to {largest_scale}; "
                        "you asked for {branch_scale}."
                    ),
                    largest_scale=f"{settings.max_guidance_scale:g}",
                    branch_scale=f"{scale:g}",
                ),
            )
        )
    return BranchSpec(branch.at_step, prompt, negative, float(scale))


# Identities the service gives itself; no caller may claim one.
INTERNAL_PREFIX = "teacher:"
STUDENT_ID_LIMIT = 128


def check_requester(who: Requester) -> Requester:
    """Who a caller says asks, checked: no internal identity, a plain name (raises RequestError)."""
    if who.student.startswith(INTERNAL_PREFIX):
        raise RequestError(
            [("student", Sentence(N_("That identity belongs to the server itself and cannot be used.")))]
        )
    if len(who.student) > STUDENT_ID_LIMIT or hidden_characters(who.student):
        raise RequestError([("student", Sentence(N_("The student id is too long or has control characters.")))])
    if len(who.address) > STUDENT_ID_LIMIT or hidden_characters(who.address):
        raise RequestError([("address", Sentence(N_("The browser address is too long or has control characters.")))])
    return dataclasses.replace(who, name=check_name(who.name), classroom=check_name(who.classroom))
