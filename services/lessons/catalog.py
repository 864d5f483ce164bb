"""Reading the lesson catalog (YAML) and expanding it into concrete generation requests."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.common.api import pb

DEFAULT_CATALOG = Path(__file__).with_name("catalog.yaml")


class RequestFields(BaseModel):
    """Fields shared by every entry of a collection (GenerateRequest names)."""

    model_config = ConfigDict(extra="forbid")

    negative_prompt: str = ""
    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    width: int | None = None
    height: int | None = None
    scheduler: str | None = None
    # Include paths computed only on request (cross_attention, decoded_x0_preview) that the
    # lesson needs: they are part of the entry's request, so precompute renders them.
    include: list[str] = Field(default_factory=list)


class BranchFields(BaseModel):
    """What a collection's entries change to at each of `branch_steps` (GenerateRequest.branch; unset: unchanged)."""

    model_config = ConfigDict(extra="forbid")

    prompt: str | None = None
    negative_prompt: str | None = None
    guidance_scale: float | None = None


class Choice(BaseModel):
    """One answer of a quick check: words, or the picture of this collection's entry with these labels."""

    model_config = ConfigDict(extra="forbid")

    text: str = ""
    labels: dict[str, str] = Field(default_factory=dict)  # e.g. {pair: colour, side: a, seed: "1"}

    @model_validator(mode="after")
    def _words_or_picture(self) -> Choice:
        if not self.text and not self.labels:
            raise ValueError("a choice needs text or the labels of a picture")
        return self


class Question(BaseModel):
    """A quick check that ships with a lesson: a question about what is on screen, and its right answer."""

    model_config = ConfigDict(extra="forbid")

    id: str
    question: str = Field(max_length=200)
    choices: list[Choice] = Field(min_length=2, max_length=6)
    answer: int  # the right choice's index

    @model_validator(mode="after")
    def _answer_is_a_choice(self) -> Question:
        if not 0 <= self.answer < len(self.choices):
            raise ValueError(f"question {self.id!r}: answer {self.answer} is not one of its choices")
        return self


class Collection(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    id: str
    # The model family whose lessons these are ("stable-diffusion" for SD 1.x and the
    # tiny model, "shapes" for ours): prompts and sizes only make sense for their model.
    model: str = "stable-diffusion"
    lesson: str
    title: str
    description: str = ""
    request: RequestFields = Field(default_factory=RequestFields)
    prompts: dict[str, str] = Field(default_factory=dict)  # label -> prompt
    pairs: dict[str, tuple[str, str]] = Field(default_factory=dict)  # pair id -> (a, b)
    seeds: list[int] = Field(min_length=1)
    guidance_scales: list[float] = Field(default_factory=list)
    schedulers: list[str] = Field(default_factory=list)
    steps: list[int] = Field(default_factory=list)
    # Lesson 8: each entry also switches to `branch` at one of these steps (one entry per step).
    branch: BranchFields | None = None
    branch_steps: list[int] = Field(default_factory=list)
    questions: list[Question] = Field(default_factory=list)  # quick checks the teacher can ask

    @model_validator(mode="after")
    def _has_prompts(self) -> Collection:
        if not self.prompts and not self.pairs:
            raise ValueError(f"collection {self.id!r} needs prompts or pairs")
        return self


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int
    collections: list[Collection]

    def for_model(self, family: str) -> Catalog:
        """The catalog as a model of this family serves it: its own collections only."""
        return Catalog(version=self.version, collections=[c for c in self.collections if c.model == family])


@dataclass(frozen=True)
class Entry:
    id: str
    collection: str
    labels: dict[str, str]
    request: pb.GenerateRequest


def load_catalog(path: Path = DEFAULT_CATALOG) -> Catalog:
    catalog = Catalog.model_validate(yaml.safe_load(path.read_text()))
    ids = [(c.model, c.id) for c in catalog.collections]
    if len(ids) != len(set(ids)):
        raise ValueError(f"{path}: collection ids repeat within a model family")
    return catalog


def _prompt_variants(collection: Collection) -> list[tuple[str, dict[str, str], str]]:
    variants = [(label, {"prompt": label}, text) for label, text in collection.prompts.items()]
    for pair, texts in collection.pairs.items():
        variants += [
            (f"{pair}-{side}", {"pair": pair, "side": side}, text) for side, text in zip("ab", texts, strict=True)
        ]
    return variants


def expand(collection: Collection, include: Iterable[str] = ()) -> list[Entry]:
    """One entry per combination of the values the collection varies.

    `include`: on-request probes every entry carries besides its collection's (the
    server's defaults, `probes.default_probes`: Shapes decodes each step's guess), so a
    lesson page asking with the same defaults finds the precomputed trajectory.
    """
    entries = []
    axes = itertools.product(
        _prompt_variants(collection),
        collection.seeds,
        collection.guidance_scales or [None],
        collection.schedulers or [None],
        collection.steps or [None],
        collection.branch_steps if collection.branch is not None else [None],
    )
    for (label, labels, text), seed, guidance, scheduler, steps, branch_at in axes:
        fields = collection.request.model_dump(exclude_none=True)
        collection_include = fields.pop("include")
        request = pb.GenerateRequest(prompt=text, seed=seed, **fields)
        request.include.paths.extend(collection_include + sorted(set(include) - set(collection_include)))
        parts = [collection.id, label, f"seed{seed}"]
        labels = labels | {"seed": str(seed)}
        if guidance is not None:
            request.guidance_scale = guidance
            parts.append(f"g{guidance:g}")
            labels["guidance_scale"] = f"{guidance:g}"
        if scheduler is not None:
            request.scheduler = scheduler
            parts.append(scheduler)
            labels["scheduler"] = scheduler
        if steps is not None:
            request.num_inference_steps = steps
            parts.append(f"{steps}steps")
            labels["steps"] = str(steps)
        if branch_at is not None and collection.branch is not None:
            request.branch.at_step = branch_at
            for name, value in collection.branch.model_dump(exclude_none=True).items():
                setattr(request.branch, name, value)
            parts.append(f"branch{branch_at}")
            labels["branch_at_step"] = str(branch_at)
        entries.append(Entry(id="/".join(parts), collection=collection.id, labels=labels, request=request))
    return entries


def all_entries(catalog: Catalog, include: Iterable[str] = ()) -> list[Entry]:
    """Every entry of the catalog, each carrying `include` too (see `expand`)."""
    return [entry for collection in catalog.collections for entry in expand(collection, include)]
