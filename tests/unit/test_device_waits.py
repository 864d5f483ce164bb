"""The worker never waits for the device in a generation's start or a class's step (tests/support/device_waits.py).

On a GPU each such wait would hold the batching worker until the UNet call in
flight is done, and leave the GPU idle while the worker does the rest of its
work: a student who joins a running class would slow everyone's next step.
The meta device stands in for the GPU; the Shapes model runs on it as it would
there (its real text encoder, UNet and schedulers), and every copy that would
wait is counted with the line that made it.
"""

from __future__ import annotations

import pytest
import torch

from services.common.include_mask import Probe
from services.inference.diffusion.batched_step import steps_together, together
from services.inference.diffusion.denoise import Generation, predict_noise
from services.inference.diffusion.events import HostCopy
from services.inference.diffusion.schedulers import SCHEDULERS, new_scheduler
from services.inference.diffusion.spec import BranchSpec, GenerationSpec
from services.inference.diffusion.to_device import on_device, to_device
from services.shapes import evaluate
from tests.support.device_waits import STAND_IN, DeviceWaits, on_stand_in

STEPS = 4
EVERY_PROBE = frozenset(probe.value for probe in Probe)
# What steps together (`batched_step.steps_together`): every probe but the maps and the decoded guesses.
JOINT_PROBES = EVERY_PROBE - {Probe.CROSS_ATTENTION.value, Probe.DECODED_X0_PREVIEW.value}


@pytest.fixture(scope="module")
def model():
    return on_stand_in(evaluate.load())


def spec(scheduler: str, seed: int, include: frozenset[str] = EVERY_PROBE) -> GenerationSpec:
    branch = BranchSpec(at_step=2, prompt="a blue square", negative_prompt="", guidance_scale=3.0)
    return GenerationSpec(
        prompt=f"a red circle number {seed}",  # a prompt new to the model: its text encoder runs
        negative_prompt="blurry" if seed % 2 else "",
        seed=seed,
        steps=STEPS,
        guidance_scale=7.5,
        width=64,
        height=64,
        scheduler=scheduler,
        include=include,
        branch=branch if seed == 2 else None,
    )


def test_the_stand_in_counts_each_copy_that_would_wait():
    on_device_ = torch.ones(3, device=STAND_IN)
    with DeviceWaits() as waits:
        on_device_.cpu()
        on_device_[0].item()
        torch.tensor([1, 2], device=STAND_IN)
        torch.ones(2).to(STAND_IN)
    assert len(waits.found) == 4, [str(w) for w in waits.found]
    with DeviceWaits() as more:
        torch.ones(2).to(STAND_IN, non_blocking=True)  # from pageable memory: it waits all the same
        on_device_[torch.tensor([0, 2])]  # the indices go to the device first
    assert len(more.found) == 2, [str(w) for w in more.found]
    with DeviceWaits() as quiet:
        to_device(torch.ones(2), STAND_IN)
        on_device([1.0, 2.0], torch.float32, STAND_IN)
        HostCopy(on_device_[None])
        on_device_ * 2
        on_device_[on_device([0, 2], torch.long, STAND_IN)]
    assert quiet.found == []


@pytest.mark.parametrize("scheduler", sorted(SCHEDULERS))
def test_a_generations_start_reads_nothing_back_from_the_device(model, scheduler):
    with DeviceWaits() as waits:
        for seed in range(3):  # a branch, a negative prompt, every probe (the embeddings for the header too)
            header = Generation(model, spec(scheduler, seed)).start()
    assert [str(w) for w in waits.found] == []
    assert len(header.timesteps) in (STEPS, STEPS + 1)  # (PNDM visits one more); read on the host, where made


def _tensors(scheduler: object) -> dict[str, torch.Tensor]:
    return {name: value for name, value in vars(scheduler).items() if isinstance(value, torch.Tensor)}


@pytest.mark.parametrize("scheduler", sorted(SCHEDULERS))
def test_a_start_leaves_each_part_of_the_schedule_where_the_pipeline_puts_it(model, scheduler):
    """Made on the host, then the timesteps moved: every tensor on the device the pipeline's is, of the same values."""
    with DeviceWaits():  # (diffusers' own copies back to the host: zeros here, so the values come from `on_host`)
        pipelines = new_scheduler(scheduler, model.scheduler_config)
        pipelines.set_timesteps(STEPS, device=STAND_IN)
    on_host = new_scheduler(scheduler, model.scheduler_config)
    on_host.set_timesteps(STEPS)
    generation = Generation(model, spec(scheduler, 0))
    with DeviceWaits():
        generation.start()
    ours = _tensors(generation.scheduler)
    assert {k: v.device for k, v in ours.items()} == {k: v.device for k, v in _tensors(pipelines).items()}
    assert ours["timesteps"].device == STAND_IN
    for name, value in ours.items():
        if value.device.type == "cpu":
            assert torch.equal(value, _tensors(on_host)[name]), name
    assert torch.equal(generation.timesteps, on_host.timesteps)


@pytest.mark.parametrize("include", [JOINT_PROBES, EVERY_PROBE], ids=["together", "with maps: alone"])
@pytest.mark.parametrize("scheduler", sorted(SCHEDULERS))
def test_a_class_steps_without_waiting_for_the_device(model, scheduler, include):
    generations = [Generation(model, spec(scheduler, seed, include)) for seed in range(3)]
    with DeviceWaits():  # (counted in the test above)
        for generation in generations:
            generation.start()
    together_ = include == JOINT_PROBES and not SCHEDULERS[scheduler].ancestral
    for step in range(len(generations[0].timesteps)):
        with torch.inference_mode(), DeviceWaits() as waits:
            pairs, unet = predict_noise(model, generations)
            steps_together(generations, together(pairs))
            assert all((g.rows is not None) == together_ for g in generations)  # the step counted is the one meant
            for generation, pair in zip(generations, pairs, strict=True):
                generation.finish_step(pair, unet, 2 * len(generations))
        found = [str(w) for w in waits.found]
        if SCHEDULERS[scheduler].ancestral:
            # Known, and diffusers' own: each generation's fresh noise is drawn from its seed's generator on the
            # host and copied to the device, one wait a generation a step (steps alone, not together).
            assert len(found) == len(generations), found
            assert all("a copy from cpu to meta" in w for w in found), found
        else:
            assert found == [], f"step {step}"
    assert all(g.done for g in generations)
