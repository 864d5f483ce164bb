"""The simulated GPU: SD 1.5's shapes through the real loop; each UNet call asks for a + b x rows of sleep."""

import asyncio
import dataclasses
import threading

import numpy as np
import pytest
import torch

from services.inference.diffusion import batching
from services.inference.diffusion import denoise as denoise_module
from services.inference.diffusion.batching import BatchScheduler
from services.inference.diffusion.denoise import Generation, denoise, finish_together, predict_noise
from services.inference.diffusion.events import Event, FinalEvent
from services.inference.diffusion.jobs import Job, Requester
from services.inference.diffusion.models import DiffusionModel
from services.inference.diffusion.simulated import H100, SIMULATED_H100, SimulatedModel, load_model
from services.inference.diffusion.spec import GenerationSpec
from services.inference.metrics import Metrics
from services.inference.settings import InferenceSettings


class Sleeps:
    """Records the sleeps asked for instead of sleeping: the cost is checked without timing anything."""

    def __init__(self) -> None:
        self.asked: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)


def spec(seed: int = 1, steps: int = 3, include: frozenset[str] = frozenset()) -> GenerationSpec:
    return GenerationSpec(
        prompt="a red circle",
        negative_prompt="",
        seed=seed,
        steps=steps,
        guidance_scale=7.5,
        width=512,
        height=512,
        scheduler="dpm_solver_pp",
        include=include,
    )


async def to_the_picture(job: Job) -> list[Event]:
    """A job's events as the worker sends them, up to and with its picture."""
    events: list[Event] = []
    while not isinstance(events[-1:] and events[-1], FinalEvent):
        events.append(await asyncio.wait_for(job.events.get(), 60))
    return events


async def one_picture(model: SimulatedModel, steps: int) -> list[Event]:
    """One student's picture through the service's batch scheduler: its events, to the picture."""
    scheduler = BatchScheduler(model, max_batch_size=4, max_queue=8, metrics=Metrics())
    try:
        return await to_the_picture(scheduler.submit(spec(steps=steps), Requester("s1")))
    finally:
        scheduler.close(5)


@pytest.fixture(autouse=True)
def threads_kept():
    """Loading the preset sets torch's threads for its process; later tests in this one must not inherit it.

    (With one thread on the test's thread and the default on the worker thread, a later test's stream and
    diffusers' pipeline summed in different orders and differed in the last bit.)
    """
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_the_preset_loads_by_name_only_and_says_what_it_is():
    model = load_model(InferenceSettings(model=SIMULATED_H100))
    assert torch.get_num_threads() == 1  # many replicas share a few cores: one thread each unless told
    assert isinstance(model, SimulatedModel)
    assert model.model_id == "simulated-h100" and model.revision.startswith("simulated-")
    assert "Simulated GPU" in model.card.display_name and "Not a real model" in model.card.description
    # SD 1.5's shapes, as GetModelInfo reports them.
    assert (model.default_size, model.latent_channels, model.vae_downsample_factor, model.max_length) == (512, 4, 8, 77)
    assert model.text_encoder.config.hidden_size == 768 and len(model.tokenizer) == 49408
    assert model.preview_decoder.name == "linear"  # as SD 1.5 out of the box
    # Never chosen for anyone who did not name it.
    assert InferenceSettings().model == "auto"


def test_a_service_open_to_the_network_refuses_it_unless_told():
    with pytest.raises(ValueError, match="ALLOW_SIMULATED_GPU"):
        InferenceSettings(model=SIMULATED_H100, host="0.0.0.0", api_token="t")
    allowed = InferenceSettings(model=SIMULATED_H100, host="0.0.0.0", api_token="t", allow_simulated_gpu=True)
    assert allowed.model == SIMULATED_H100
    assert InferenceSettings(model=SIMULATED_H100).model == SIMULATED_H100  # loopback: a test or a laptop


def test_each_unet_call_asks_for_a_plus_b_times_its_rows():
    sleeps = Sleeps()
    model = SimulatedModel(SIMULATED_H100, H100, sleep=sleeps)
    for count in (1, 3, 32):
        generations = [Generation(model, spec(seed)) for seed in range(count)]
        for generation in generations:
            generation.start()
        noise, _ = predict_noise(model, generations)
        assert [n.shape for n in noise] == [(2, 4, 64, 64)] * count
    rows = [2, 6, 64]
    assert sleeps.asked == pytest.approx([(23.46 + 2.644 * r) / 1000 for r in rows])
    # The fit's own points (docs/benchmarks.md): about 29 ms for one student, about 193 ms for 32.
    assert sleeps.asked[0] == pytest.approx(0.0288, abs=0.001) and sleeps.asked[2] == pytest.approx(0.1927, abs=0.001)


def test_a_generation_through_the_real_loop_has_sd_shapes():
    sleeps = Sleeps()
    model = SimulatedModel(SIMULATED_H100, H100, sleep=sleeps)
    generations = [Generation(model, spec(seed, include=frozenset({"cross_attention"}))) for seed in (1, 2)]
    headers = [g.start() for g in generations]
    assert headers[0].prompt.tokens.ids[:5] == [49406, 320, 736, 7117, 49407]  # CLIP's own tokens: "a red circle"
    assert headers[0].initial_latent.numpy().shape == (4, 64, 64)
    steps = list(denoise(model, generations))
    assert len(steps) == 3 and len(sleeps.asked) == 3  # one UNet call a step for both
    frame = steps[-1][0]
    frame.copied()
    assert frame.latent.numpy().shape == (4, 64, 64) and frame.predicted_x0.numpy().shape == (4, 64, 64)
    assert frame.batch_size == 4
    assert frame.cross_attention is not None and frame.cross_attention.maps.numpy().shape[-2:] == (64, 64)
    finals = finish_together(generations, [0.0, 0.0], [1.0, 1.0])
    assert [f.image.shape for f in finals] == [(512, 512, 3)] * 2
    assert finals[0].image.dtype.name == "uint8" and not finals[0].flagged


async def test_the_worker_thread_sleeps_not_the_event_loop():
    """The service's worker thread makes the UNet call, so the sleep never holds up a stream on the event loop."""
    callers: list[str] = []
    model = SimulatedModel(SIMULATED_H100, H100, sleep=lambda seconds: callers.append(threading.current_thread().name))
    events = await one_picture(model, steps=2)
    assert len(callers) == 2 and set(callers) == {"diffusion-runner"}
    assert threading.current_thread().name not in callers
    assert events[-1].image.shape == (512, 512, 3)


async def test_a_request_that_comes_while_the_batch_starts_joins_its_first_step():
    """A request that comes while the ones before it start runs in their first UNet call, not a call later.

    A class asks at once, but its requests reach the worker one by one over a few hundred milliseconds.
    """
    sleeps = Sleeps()
    model = SimulatedModel(SIMULATED_H100, H100, sleep=sleeps)
    starting, submitted = threading.Event(), threading.Event()
    encode = model.encode

    def slow_first_start(prompt: str):
        if prompt == "a red circle":  # the first student's start: the second asks meanwhile
            starting.set()
            assert submitted.wait(30)
        return encode(prompt)

    model.encode = slow_first_start
    scheduler = BatchScheduler(model, max_batch_size=4, max_queue=8, metrics=Metrics())
    try:
        first = scheduler.submit(spec(steps=3), Requester("s1"))
        assert await asyncio.to_thread(starting.wait, 30)
        second = scheduler.submit(dataclasses.replace(spec(steps=3), prompt="a blue square"), Requester("s2"))
        submitted.set()
        for job in (first, second):
            await to_the_picture(job)
    finally:
        scheduler.close(5)
    # Three steps, each one call of both students (4 rows): never a call for the first alone.
    assert sleeps.asked == pytest.approx([H100.unet_seconds(4)] * 3)


async def test_each_step_s_frames_go_once_the_next_call_s_inputs_are_made(monkeypatch):
    """On the CPU a step's frames are sent just before the next UNet call: after its inputs, not beside them.

    The encoders and the event loop then work on them while the call runs (here: sleeps), not while
    the worker stacks the batch's inputs.
    """
    order: list[str] = []
    model = SimulatedModel(SIMULATED_H100, H100, sleep=lambda seconds: order.append("call"))
    inputs, emit_all = denoise_module.model_inputs, batching.emit_all

    def made(generations):
        order.append("inputs")
        return inputs(generations)

    def sent(events):
        if events:  # (with nothing held, nothing is sent)
            order.append("send " + ", ".join(type(event).__name__ for _, event in events))
        emit_all(events)

    monkeypatch.setattr(denoise_module, "model_inputs", made)
    monkeypatch.setattr(batching, "emit_all", sent)
    events = await one_picture(model, steps=3)
    assert order == [
        "send HeaderEvent",
        *("inputs", "call"),
        *("inputs", "send StepEvent", "call"),
        *("inputs", "send StepEvent", "call"),
        "send StepEvent",  # the last step's frame, before the picture
    ]
    kinds = [type(event).__name__ for event in events if type(event).__name__ != "QueueEvent"]
    assert kinds == ["HeaderEvent", *["StepEvent"] * 3, "FinalEvent"]


def test_its_decode_paints_the_pictures_the_decoder_makes_to_the_pixel():
    model = SimulatedModel(SIMULATED_H100, H100, sleep=Sleeps())
    latents = torch.randn(3, 4, 64, 64, generator=torch.Generator().manual_seed(5)) * 4  # some beyond [-1, 1]
    fast, whole = model.decode(latents), DiffusionModel.decode(model, latents)
    assert len(fast) == len(whole) == 3
    for mine, theirs in zip(fast, whole, strict=True):
        assert mine.shape == (512, 512, 3) and mine.dtype == np.uint8
        assert np.array_equal(mine, theirs)
    assert len({picture.tobytes() for picture in fast}) == 3 and 0 < fast[0].mean() < 255


def test_its_text_vectors_are_drawn_from_the_token_and_its_place_and_kept():
    encoder = SimulatedModel(SIMULATED_H100, H100, sleep=Sleeps()).text_encoder
    ids = torch.tensor([[49406, 320, 736, 2445, 49407, 49407, 49407]])
    for _ in range(2):  # drawn, then kept: the same vectors
        (vectors,) = encoder(ids)
        assert vectors.shape == (1, 7, 768)
        for position, token in enumerate(ids[0].tolist()):
            drawn = torch.randn(768, generator=torch.Generator().manual_seed(token * 131 + position))
            assert torch.equal(vectors[0, position], drawn)
    assert not torch.equal(vectors[0, 4], vectors[0, 5])  # the same token elsewhere is another vector
