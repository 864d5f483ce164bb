"""A batch's guided step as tensor work done once for all its generations, each row bit for bit its own step.

`denoise.guided_step` is the lesson's step for one generation: some forty small tensor
operations. A class's batch of 64 ran it 64 times a step, and every operation gives up
the GIL and takes it back, so the worker's step waited on the event loop and the frame
encoders each time (docs/benchmarks.md, "The service's own loop on the simulated GPU").
Here the same operations run once for every generation whose scheduler is in the same
place (the same kind, number of steps and step): their latents, their noise predictions
and what their schedulers keep between steps are stacked along the batch, diffusers'
own `scale_model_input` and `step` run once on the stack with the very coefficients they
use for one, and each generation takes its rows back. Every operation is elementwise,
so each row is exactly the number its generation's own step gives; guidance's scale,
the one number that differs between generations, is a float32 column, multiplied as a
plain number is (in float32, rounded to the model's precision).
tests/unit/test_batched_step.py compares every scheduler kind, row by row, bit for bit.

Ancestral schedulers draw fresh noise from each generation's own generator: those
generations step alone (`denoise.guided_step`), as does any generation that asked for
cross-attention maps or decoded pictures (their probes are per generation anyway), and
every generation of a batch whose joint step failed (each then fails or not on its own).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from services.inference.diffusion.events import HostCopy, StepEvent, Stopwatch
from services.inference.diffusion.schedulers import SCHEDULERS, predicted_x0
from services.inference.diffusion.to_device import on_device

if TYPE_CHECKING:
    from services.inference.diffusion.models import DiffusionModel
    from services.inference.diffusion.spec import GenerationSpec

log = logging.getLogger(__name__)


class Generation(Protocol):
    """What a joint step reads and writes of each generation (`denoise.Generation`, which imports this module)."""

    model: DiffusionModel
    spec: GenerationSpec
    scheduler: Any
    timesteps: torch.Tensor
    timestep_values: list[float]
    sigma_values: list[float | None]
    step_index: int
    latents: torch.Tensor
    embeddings: torch.Tensor
    branch_embeddings: torch.Tensor
    extra_step_kwargs: dict[str, Any]
    denoising: list[Stopwatch]
    wants_attention: bool
    wants_decoded_x0: bool
    rows: Rows | None

    @property
    def branched(self) -> bool: ...


# What a scheduler keeps between steps about its own sample (DPM-Solver++'s last predictions,
# LMS's derivatives, PNDM's past noises and held sample): stacked for a joint step, split after.
SAMPLE_STATE = ("model_outputs", "derivatives", "ets", "cur_sample", "cur_model_output")
# Where a scheduler is: the same for every generation at the same step of the same schedule.
PLACE_STATE = ("_step_index", "_begin_index", "is_scale_input_called", "lower_order_nums", "counter")


def place(generation: Generation) -> tuple[str, int, int]:
    """What makes two generations' schedulers step alike: their kind, their schedule's length, their step."""
    return generation.spec.scheduler, len(generation.timesteps), generation.step_index


def together(rows: Sequence[torch.Tensor]) -> torch.Tensor:
    """The rows (of a few samples each) stacked along the batch: rows that lie one after another in memory, uncopied.

    A batch's own rows (its `split`), all or some of them in order, lie end to end in its
    memory: the stack is then a view of that memory, not a copy. Views made in inference
    mode, as the service's steps are, have no `_base` to compare: the rows' addresses say it.
    Anything else (rows of different tensors, or out of order) is copied by `torch.cat`.
    """
    first = rows[0]
    if first.is_contiguous():
        size = first.numel() * first.element_size()
        start, storage = first.data_ptr(), first.untyped_storage()
        within = start - storage.data_ptr() + size * len(rows) <= storage.nbytes()
        # Addresses inside the first row's own memory can only be that memory's (no storage overlaps another).
        if within and all(
            row.data_ptr() == start + i * size
            and row.shape == first.shape
            and row.dtype == first.dtype
            and row.is_contiguous()
            for i, row in enumerate(rows)
        ):
            shape = (first.shape[0] * len(rows), *first.shape[1:])
            strides = (first.numel() // first.shape[0], *first.stride()[1:])
            return first.as_strided(shape, strides, first.storage_offset())
    return torch.cat(list(rows))


def _stack(values: list[Any], kept: bool = False) -> Any:
    """One piece of sample state for a joint step, from every generation's own.

    The tensors a scheduler keeps in a list (past predictions, derivatives) are only ever
    replaced, so the last joint step's own stack serves again (`together`); a tensor kept
    alone is stacked afresh, as PNDM's first steps add into theirs in place.
    """
    first = values[0]
    if isinstance(first, list):
        return [_stack([value[i] for value in values], kept=True) for i in range(len(first))]
    if isinstance(first, torch.Tensor):
        if kept:
            return together(values)
        return torch.cat(values) if len(values) > 1 else first.clone()
    return first  # None, or PNDM's 0 before its first step: the same for all


def _split(value: Any, count: int) -> list[Any]:
    """Each generation's own piece of a joint step's sample state."""
    if isinstance(value, list):
        columns = [_split(item, count) for item in value]
        return [[column[i] for column in columns] for i in range(count)]
    if isinstance(value, torch.Tensor):
        return list(value.split(1))
    return [value] * count


def model_inputs(generations: list[Generation]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """4a for a batch: the UNet's latents (each generation's twice, in batch order), timesteps and texts.

    What `Generation.model_input` gives each generation, stacked as `predict_noise` stacks
    it, with one `scale_model_input` for the generations at the same place.
    """
    groups: dict[tuple[str, int, int], list[int]] = {}
    for index, generation in enumerate(generations):
        groups.setdefault(place(generation), []).append(index)
    scaled, order, offset = [], [0] * len(generations), 0
    for members in groups.values():
        lead = generations[members[0]]
        t = lead.timesteps[lead.step_index]
        scaled.append(lead.scheduler.scale_model_input(together([generations[i].latents for i in members]), t))
        _copy_place(lead.scheduler, [generations[i].scheduler for i in members[1:]])  # (Euler marks it was called)
        for position, i in enumerate(members):
            order[i] = offset + position
        offset += len(members)
    stacked = scaled[0] if len(scaled) == 1 else torch.cat(scaled)
    pairs = on_device(np.repeat(order, 2), torch.long, stacked.device)
    latents = stacked.index_select(0, pairs)
    values = [g.timestep_values[g.step_index] for g in generations]
    timesteps = on_device(np.repeat(values, 2), torch.float32, stacked.device)
    return latents, timesteps, _texts([g.branch_embeddings if g.branched else g.embeddings for g in generations])


_last_texts: tuple[list[torch.Tensor], torch.Tensor] | None = None


def _texts(texts: list[torch.Tensor]) -> torch.Tensor:
    """The batch's texts stacked: the last stack again when they are the same (a class's batch, step after step)."""
    global _last_texts
    if _last_texts is not None:
        kept, stacked = _last_texts
        if len(kept) == len(texts) and all(a is b for a, b in zip(kept, texts, strict=True)):
            return stacked
    stacked = torch.cat(texts)
    _last_texts = (texts, stacked)
    return stacked


def _copy_place(source: Any, targets: list[Any]) -> None:
    for name in PLACE_STATE:
        if hasattr(source, name):
            value = getattr(source, name)
            for target in targets:
                setattr(target, name, value)


@dataclass
class Rows:
    """One generation's rows of a joint step, waiting for `Generation.finish_step` to take them."""

    step_index: int
    latents: torch.Tensor
    x0: torch.Tensor
    state: dict[str, Any]
    place: dict[str, Any]
    copies: tuple[HostCopy, HostCopy, HostCopy, HostCopy, HostCopy]  # latent, x0, unconditional, conditional, guided
    scheduler: Stopwatch

    def take(self, generation: Generation, unet: Stopwatch, batch_size: int) -> StepEvent:
        """4b-4d as `guided_step` ends them: this generation's state and its step's event."""
        for name, value in (self.place | self.state).items():
            setattr(generation.scheduler, name, value)
        generation.latents = self.latents
        latent, x0, *noise = self.copies
        generation.denoising += [unet, self.scheduler]
        index = generation.step_index
        generation.step_index += 1
        return StepEvent(
            step_index=index,
            total_steps=len(generation.timesteps),
            timestep=generation.timestep_values[index],
            sigma=generation.sigma_values[index],
            latent=latent,
            predicted_x0=x0,
            noise=(noise[0], noise[1], noise[2]),
            unet=unet,
            scheduler=self.scheduler,
            batch_size=batch_size,
        )


def steps_together(generations: list[Generation], noise: torch.Tensor) -> None:
    """4b-4d for a batch, once the UNet has run: guidance, the scheduler's step, x0 and the host copies, stacked.

    `noise` is the UNet's output for the whole batch (each generation's pair of rows,
    unconditional then conditional, in batch order). Each generation that can share the
    work finds its rows waiting for its `finish_step`; the others step alone there.
    """
    for generation in generations:
        generation.rows = None
    joined = [i for i, g in enumerate(generations) if _joins(g)]
    if not joined:
        return
    try:
        _step_joined([generations[i] for i in joined], noise, joined, len(generations))
    except Exception:
        log.exception("the batch's joint step failed; its generations step alone")
        for generation in generations:
            generation.rows = None


def _joins(generation: Generation) -> bool:
    spec = SCHEDULERS[generation.spec.scheduler]
    return not spec.ancestral and not generation.wants_attention and not generation.wants_decoded_x0


def _step_joined(generations: list[Generation], noise: torch.Tensor, rows: list[int], batch: int) -> None:
    stopwatch = Stopwatch(generations[0].model.device)
    pairs = noise.view(batch, 2, *noise.shape[1:])
    if len(rows) < batch:
        pairs = pairs.index_select(0, on_device(rows, torch.long, noise.device))
    unconditional, conditional = pairs[:, 0], pairs[:, 1]

    # 4b. Guidance, each generation at its own scale: a float32 column, as a plain number is multiplied.
    scales = [g.spec.reads_at(g.step_index)[2] for g in generations]
    column = on_device(scales, torch.float32, noise.device).view(-1, *[1] * (noise.dim() - 1))
    guided = unconditional + (column * (conditional - unconditional)).to(noise.dtype)

    groups: dict[tuple[str, int, int], list[int]] = {}
    for index, generation in enumerate(generations):
        groups.setdefault(place(generation), []).append(index)
    whole = len(groups) == 1
    prepared: list[tuple[list[int], torch.Tensor, torch.Tensor, list[dict[str, Any]], dict[str, Any]]] = []
    for members in groups.values():
        lead = generations[members[0]]
        schedulers = [generations[i].scheduler for i in members]
        index = on_device(members, torch.long, noise.device)
        model_output = guided if whole else guided.index_select(0, index)
        sample = together([generations[i].latents for i in members])
        t = lead.timesteps[lead.step_index]

        # 4c. Diffusers' own step, once, on a copy of one scheduler holding every member's sample state.
        joint = _joint_scheduler(schedulers)
        output = joint.step(model_output, t, sample, **lead.extra_step_kwargs, return_dict=True)
        # 4d. The model's guess of x0.
        x0 = predicted_x0(joint, output, sample, model_output, lead.timestep_values[lead.step_index])
        states = [dict(zip(names, values, strict=True)) for names, values in _split_state(joint, len(members))]
        where = {name: getattr(joint, name) for name in PLACE_STATE if hasattr(joint, name)}
        prepared.append((members, output.prev_sample, x0, states, where))

    # The copies for the wire, one conversion for the batch each.
    if whole:
        members, latents, x0, states, where = prepared[0]
        latent_rows, x0_rows = list(latents.split(1)), list(x0.split(1))
        latent_copies, x0_copies = HostCopy.rows(latents), HostCopy.rows(x0)
        order = members
    else:
        order = [i for members, *_ in prepared for i in members]
        latents = torch.cat([p[1] for p in prepared])
        x0 = torch.cat([p[2] for p in prepared])
        latent_rows, x0_rows = list(latents.split(1)), list(x0.split(1))
        latent_copies, x0_copies = HostCopy.rows(latents), HostCopy.rows(x0)
        states = [state for p in prepared for state in p[3]]
    places = [p[4] for p in prepared for _ in p[0]]
    noise_copies = [HostCopy.rows(part) for part in (unconditional, conditional, guided)]
    stopwatch.stop()
    for position, i in enumerate(order):
        generations[i].rows = Rows(
            step_index=generations[i].step_index,
            latents=latent_rows[position],
            x0=x0_rows[position],
            state=states[position],
            place=places[position],
            copies=(
                latent_copies[position],
                x0_copies[position],
                noise_copies[0][i],
                noise_copies[1][i],
                noise_copies[2][i],
            ),
            scheduler=stopwatch,
        )


def _joint_scheduler(schedulers: list[Any]) -> Any:
    """A shallow copy of the first scheduler whose sample state is every scheduler's, stacked."""
    joint = object.__new__(type(schedulers[0]))
    joint.__dict__.update(schedulers[0].__dict__)
    for name in SAMPLE_STATE:
        if name in joint.__dict__:
            setattr(joint, name, _stack([s.__dict__[name] for s in schedulers]))
    return joint


def _split_state(joint: Any, count: int) -> list[tuple[list[str], list[Any]]]:
    names = [name for name in SAMPLE_STATE if name in joint.__dict__]
    columns = [_split(getattr(joint, name), count) for name in names]
    return [(names, [column[i] for column in columns]) for i in range(count)]
