"""A batch's step done together (batched_step.py) is, row by row and bit for bit, each generation's own step."""

import numpy as np
import pytest
import torch

from services.inference.diffusion.batched_step import model_inputs, steps_together, together
from services.inference.diffusion.denoise import Generation, guided_step
from services.inference.diffusion.schedulers import SCHEDULERS
from services.inference.diffusion.simulated import H100, SIMULATED_H100, SimulatedModel
from services.inference.diffusion.spec import BranchSpec, GenerationSpec

# A class at mixed places: the same schedule at one step, another length, a late joiner, scales apart, a branch.
CLASS = [
    # seed, steps, guidance, joins at the batch's step
    (1, 6, 7.5, 0),
    (2, 6, 7.5, 0),
    (3, 6, 1.5, 0),
    (4, 8, 12.0, 0),
    (5, 6, 0.0, 2),
    (6, 6, 7.5, 2),
]


def spec(scheduler: str, seed: int, steps: int, guidance: float) -> GenerationSpec:
    branch = BranchSpec(at_step=3, prompt="a blue square", negative_prompt="", guidance_scale=3.0)
    return GenerationSpec(
        prompt="a red circle",
        negative_prompt="blurry" if seed % 2 else "",
        seed=seed,
        steps=steps,
        guidance_scale=guidance,
        width=64,
        height=96,
        scheduler=scheduler,
        include=frozenset(),
        branch=branch if seed == 2 else None,
    )


def started(model: SimulatedModel, scheduler: str) -> list[Generation]:
    generations = [Generation(model, spec(scheduler, seed, steps, g)) for seed, steps, g, _ in CLASS]
    for generation in generations:
        generation.start()
    return generations


def stacked_alone(generations: list[Generation]) -> torch.Tensor:
    """The UNet's inputs as each generation's own `model_input` gives them, stacked."""
    return torch.cat([g.model_input()[0] for g in generations])


@pytest.mark.parametrize("inference", [False, True], ids=["autograd", "inference mode"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("scheduler", sorted(SCHEDULERS))
def test_every_row_of_the_joint_step_is_the_generations_own(scheduler, dtype, inference):
    """Also in inference mode, as the service steps: there the joint step's stacks are views of the last one's."""
    model = SimulatedModel(SIMULATED_H100, H100, sleep=lambda seconds: None)
    model.dtype = dtype
    joint, alone = started(model, scheduler), started(model, scheduler)
    draw = torch.Generator().manual_seed(0)
    with torch.inference_mode(inference):
        _step_through(joint, alone, scheduler, dtype, draw)
    assert all(g.done for g in joint)
    for generation, other in zip(joint, alone, strict=True):
        assert torch.equal(generation.latents, other.latents)


def _step_through(joint: list[Generation], alone: list[Generation], scheduler: str, dtype: torch.dtype,
                  draw: torch.Generator) -> None:  # fmt: skip
    for step in range(12):
        running = [i for i, (_, _, _, joins) in enumerate(CLASS) if step >= joins and not joint[i].done]
        if not running:
            break
        batch, reference = [joint[i] for i in running], [alone[i] for i in running]
        # 4a. The inputs: each generation's latent twice, its timestep, its texts.
        latents, timesteps, texts = model_inputs(batch)
        assert torch.equal(latents, stacked_alone(reference))
        expected_t = torch.cat([g.model_input()[1].reshape(1).float().expand(2) for g in reference])
        assert torch.equal(timesteps, expected_t)
        assert torch.equal(texts, torch.cat([g.model_input()[2] for g in reference]))
        # 4b-4d. A noise prediction for every row (what the UNet would say), the same for both.
        noise = torch.randn((2 * len(batch), *latents.shape[1:]), generator=draw).to(dtype)
        steps_together(batch, noise)
        pairs = noise.split(2)
        for generation, other, pair in zip(batch, reference, pairs, strict=True):
            assert (generation.rows is None) == SCHEDULERS[scheduler].ancestral
            event = generation.finish_step(pair, None, batch_size=2 * len(batch))
            expected = guided_step(other, pair.clone(), None, batch_size=2 * len(batch))
            assert torch.equal(generation.latents, other.latents)
            assert (event.step_index, event.timestep, event.sigma) == (
                expected.step_index,
                expected.timestep,
                expected.sigma,
            )
            for copy, wanted in zip(
                (event.latent, event.predicted_x0, *event.noise),
                (expected.latent, expected.predicted_x0, *expected.noise),
                strict=True,
            ):
                np.testing.assert_array_equal(copy.numpy(), wanted.numpy())


@pytest.mark.parametrize("inference", [False, True], ids=["autograd", "inference mode"])
def test_a_batchs_own_rows_are_that_batch_uncopied(inference: bool):
    """In inference mode (the service's steps) a view has no `_base`: the rows' own addresses say they are the batch."""
    with torch.inference_mode(inference):
        batch = torch.randn(6, 4)  # a tensor of its own (not a view), as the UNet and the scheduler return
        for rows in (list(batch.split(2)), list(batch.split(1)), [batch[0:2], batch[2:4]]):
            joined = together(rows)
            assert joined.data_ptr() == batch.data_ptr() and joined.is_contiguous()
            assert torch.equal(joined, batch[: len(joined)])
        reordered = together([batch[2:4], batch[0:2], batch[4:6]])
        assert reordered.data_ptr() != batch.data_ptr()
        assert torch.equal(reordered, torch.cat([batch[2:4], batch[0:2], batch[4:6]]))
        other = torch.randn(2, 4)
        assert torch.equal(together([batch[0:2], other]), torch.cat([batch[0:2], other]))  # two tensors: a copy
        gap = together([batch[0:2], batch[4:6]])  # rows 2 and 3 left out: a copy, not what lies between
        assert torch.equal(gap, torch.cat([batch[0:2], batch[4:6]]))
        assert torch.equal(together([batch[4:6]]), batch[4:6])


@pytest.mark.parametrize("scheduler", sorted(SCHEDULERS))
def test_a_start_finds_the_first_step_where_the_scheduler_itself_would(scheduler):
    """Set at the start from the host copy (no search on the device at the first step), and the same place."""
    from services.inference.diffusion.schedulers import make_scheduler

    model = SimulatedModel(SIMULATED_H100, H100, sleep=lambda seconds: None)
    for steps in (1, 2, 6, 25, 50, 200, 1000):
        generation = Generation(model, spec(scheduler, 1, steps, 7.5))
        generation.start()
        fresh = make_scheduler(scheduler, model.scheduler_config)
        fresh.set_timesteps(steps)
        if not hasattr(fresh, "index_for_timestep"):
            assert getattr(generation.scheduler, "begin_index", None) is None  # DDIM, PNDM: they never search
            continue
        assert generation.scheduler.begin_index == fresh.index_for_timestep(fresh.timesteps[0]), steps
