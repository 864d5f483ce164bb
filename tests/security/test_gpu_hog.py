"""The GPU hog: a student asks for the costliest picture the server allows while a classmate makes a standard one.

A real gRPC server on loopback with the shipped Shapes model. What is checked is what
the classmate gets: their picture still arrives, and it is not held up by the hog's
steps. The fairness is counted, never timed: every UNet call is recorded (whose steps
it ran), and while both pictures are running the hog may take about as much of the
machine's work as the classmate (steps times pixels), not one step for each of the
classmate's steps. The wall-clock ratio is in tests/bench/test_bench_gpu_hog.py.

On the code before cost-weighted turns (sizes took turns step by step), the hog made
as many steps as the classmate while both ran: 4 times the classmate's pixels each.
"""

from __future__ import annotations

import threading
import time

import grpc
import pytest

from services.common.api import STUDENT_METADATA, pb, unbatch
from services.common.shapes_judge import judge
from services.inference.diffusion import batching
from services.lessons.catalog import DEFAULT_CATALOG
from tests.integration.helpers import collect, request
from tests.support.servers import running_server, stub_for

HOG_PROMPT = "a red circle on the left"
CLASSMATE_PROMPT = "a blue square on the right"


def student(name: str) -> tuple[tuple[str, str], ...]:
    return ((STUDENT_METADATA, name),)


class UnetCalls:
    """Every UNet call the scheduler makes, as the list of (prompt, width, height) it ran, in order."""

    def __init__(self) -> None:
        self.calls: list[list[tuple[str, int, int]]] = []
        self.lock = threading.Lock()
        self.on_call = None  # called with the call's generations before it runs (from the worker thread)

    def wrap(self, predict):
        def recorded(model, generations, *rest):
            if self.on_call is not None:
                self.on_call(generations)
            with self.lock:
                self.calls.append([(g.spec.prompt, g.spec.width, g.spec.height) for g in generations])
            return predict(model, generations, *rest)

        return recorded

    def of(self, prompt: str) -> list[int]:
        """The indices of the calls that ran a step of the picture with this prompt."""
        with self.lock:
            return [i for i, call in enumerate(self.calls) if any(p == prompt for p, _, _ in call)]


@pytest.fixture(scope="module")
def shapes_server(settings):
    config = settings.model_copy(update={"model": "shapes", "catalog": DEFAULT_CATALOG, "redis_url": "",
                                         "single_flight": False, "max_batch_size": 4, "metrics_port": 0})  # fmt: skip
    with running_server(config) as server:
        channel, stub = stub_for(server.address)
        yield server, stub
        channel.close()


@pytest.fixture
def unet_calls(monkeypatch):
    calls = UnetCalls()
    monkeypatch.setattr(batching, "predict_noise", calls.wrap(batching.predict_noise))
    return calls


def wait_until(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def costliest(info: pb.ModelInfo) -> pb.GenerateRequest:
    """The costliest request the server admits: the most steps, the largest size, both costly probes."""
    limits = info.limits
    include = [*info.default_include_paths, "cross_attention", "decoded_x0_preview"]
    return request(HOG_PROMPT, sorted(set(include)), seed=1, num_inference_steps=limits.max_steps,
                   width=limits.max_size, height=limits.max_size)  # fmt: skip


def test_a_classmates_standard_picture_is_not_held_up_by_the_costliest_request(shapes_server, unet_calls):
    server, stub = shapes_server
    info = stub.GetModelInfo(pb.GetModelInfoRequest())
    hog_request = costliest(info)
    hog = stub.Generate(hog_request, metadata=student("hog"))
    hog_frames: list[int] = []

    def read_hog() -> None:
        try:
            for response in unbatch(hog):
                if response.WhichOneof("event") == "frame":
                    hog_frames.append(response.frame.step_index)
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.CANCELLED

    reader = threading.Thread(target=read_hog)
    reader.start()
    try:
        wait_until(lambda: len(hog_frames) >= 2)  # the hog is running
        classmate = collect(stub.Generate(request(CLASSMATE_PROMPT, seed=2), metadata=student("classmate")))
    finally:
        hog.cancel()  # the hog closes the tab
        reader.join(60)

    # The classmate's standard picture arrived, and is what they asked for.
    assert classmate.final is not None
    assert len(classmate.frames) == info.default_steps
    verdict = judge(classmate.image)
    assert (verdict.colour, verdict.shape, verdict.position) == ("blue", "square", "on the right")

    # While both ran, the hog got about as much of the machine as the classmate, not a step per step.
    mine = unet_calls.of(CLASSMATE_PROMPT)
    first, last = mine[0], mine[-1]
    hog_steps = [i for i in unet_calls.of(HOG_PROMPT) if first <= i <= last]
    pixels = (hog_request.width * hog_request.height) / (info.default_width * info.default_height)
    # Work in the classmate's steps (pixels only, a lower bound: the costly probes only add to the hog's).
    hog_work, classmate_work = len(hog_steps) * pixels, len(mine)
    print(f"while both ran: classmate {len(mine)} steps, hog {len(hog_steps)} steps of {pixels:g}x the pixels")
    # Sharing by work, the classmate's picture takes (its work + the hog's) / its work of its time alone.
    assert (classmate_work + hog_work) / classmate_work <= 3.0

    # The closed tab stops the hog: it leaves the scheduler, long before its last step.
    scheduler = server.classroom.scheduler
    wait_until(lambda: scheduler.stats().active_generations == 0)
    assert scheduler.stats().generations_cancelled >= 1
    assert len(unet_calls.of(HOG_PROMPT)) < hog_request.num_inference_steps


def test_a_cancel_takes_effect_at_the_next_step_boundary(shapes_server, unet_calls):
    """A tab closed during one of the hog's steps: that step is its last; no UNet call runs it again."""
    server, stub = shapes_server
    info = stub.GetModelInfo(pb.GetModelInfoRequest())
    scheduler = server.classroom.scheduler
    cancelled_at: list[int] = []

    def close_the_tab_during_the_third_step(generations) -> None:
        if any(g.spec.prompt == HOG_PROMPT for g in generations) and len(unet_calls.of(HOG_PROMPT)) == 2:
            cancelled_at.append(len(unet_calls.calls))  # the index this call gets
            scheduler.stop_jobs_of(lambda who: who.student == "hog", "You closed the tab.")

    unet_calls.on_call = close_the_tab_during_the_third_step
    with pytest.raises(grpc.RpcError) as caught:
        collect(stub.Generate(costliest(info), metadata=student("hog")))
    assert caught.value.code() == grpc.StatusCode.ABORTED
    wait_until(lambda: scheduler.stats().active_generations == 0)
    assert cancelled_at and unet_calls.of(HOG_PROMPT)[-1] == cancelled_at[0]
    # The class goes on: the next picture is made.
    assert collect(stub.Generate(request(CLASSMATE_PROMPT, seed=3), metadata=student("classmate"))).final


def test_running_work_counts_toward_the_servers_bound(shapes_server, unet_calls, monkeypatch):
    """An idle server takes the costliest request; while it runs, its steps still to come count as queued work.

    On the code before, only waiting work counted: with nobody waiting, any number of
    costly requests got in beside a running one, however much work they left ahead.
    """
    server, stub = shapes_server
    info = stub.GetModelInfo(pb.GetModelInfoRequest())
    scheduler = server.classroom.scheduler
    monkeypatch.setattr(scheduler, "max_queue_work", 20.0)  # the costliest request alone is 20 standard pictures

    def pause_during_the_first_step(generations) -> None:
        # The teacher pauses while the hog's first step runs: 99 of its 100 steps are left (19.8 standard
        # pictures), whatever the machine's speed (5 steps done would leave room for a classmate).
        if any(g.spec.prompt == HOG_PROMPT for g in generations):
            unet_calls.on_call = None
            scheduler.pause(True)

    unet_calls.on_call = pause_during_the_first_step
    hog = stub.Generate(costliest(info), metadata=student("hog"))
    events = unbatch(hog)
    try:
        assert next(kind for r in events if (kind := r.WhichOneof("event")) == "frame")  # running, now paused
        assert scheduler.paused and len(unet_calls.of(HOG_PROMPT)) == 1
        classmate = stub.Generate(request(CLASSMATE_PROMPT, seed=4), metadata=student("classmate"))
        with pytest.raises(grpc.RpcError) as caught:
            first = next(unbatch(classmate))  # a refusal comes first; an admitted picture starts with its status
            classmate.cancel()
            pytest.fail(f"admitted beside the running hog: {first.WhichOneof('event')}")
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert caught.value.details().startswith("The server is busy with large pictures right now (about ")
        assert scheduler.stats().queued_generations == 0  # nobody was waiting: the running work refused it
    finally:
        hog.cancel()
        server.classroom.pause(False)
    wait_until(lambda: scheduler.stats().active_generations == 0)


def test_a_tab_closed_while_the_class_is_paused_leaves_at_once(shapes_server):
    """A paused class holds its running pictures between steps; a closed tab's picture still leaves (and its memory)."""
    server, stub = shapes_server
    info = stub.GetModelInfo(pb.GetModelInfoRequest())
    scheduler = server.classroom.scheduler
    hog = stub.Generate(costliest(info), metadata=student("hog"))
    events = unbatch(hog)
    try:
        assert next(kind for r in events if (kind := r.WhichOneof("event")) == "frame")  # running
        server.classroom.pause(True)
        hog.cancel()
        wait_until(lambda: scheduler.stats().active_generations == 0)  # before the class resumes
        assert scheduler.paused
    finally:
        server.classroom.pause(False)


def test_pictures_of_other_sizes_run_one_size_at_a_time(shapes_server, unet_calls):
    """Large pictures of two sizes run one size at a time, in their order; a standard picture passes them."""
    server, stub = shapes_server
    info = stub.GetModelInfo(pb.GetModelInfoRequest())
    largest, between = info.limits.max_size, (info.limits.max_size + info.default_width) // 2
    asked = {
        "large": request("a green star at the top", seed=5, num_inference_steps=12, width=largest, height=largest),
        "between": request("a yellow triangle", seed=6, num_inference_steps=12, width=between, height=between),
        "standard": request(CLASSMATE_PROMPT, seed=7),
        "large again": request(
            "a green star at the bottom", seed=8, num_inference_steps=12, width=largest, height=largest
        ),
    }
    server.classroom.pause(True)  # all four wait, in this order
    scheduler = server.classroom.scheduler
    streams: dict[str, object] = {}

    def ask(name: str) -> None:
        streams[name] = collect(stub.Generate(asked[name], metadata=student(name)))

    readers = [threading.Thread(target=ask, args=(name,)) for name in asked]
    try:
        for waiting, reader in enumerate(readers, start=1):
            reader.start()
            wait_until(lambda waiting=waiting: scheduler.stats().queued_generations == waiting)
    finally:
        server.classroom.pause(False)
    for reader in readers:
        reader.join(120)
    assert all(streams[name].final for name in asked)
    large, medium, standard, again = (unet_calls.of(asked[name].prompt) for name in asked)
    assert medium[0] > large[-1]  # the second size started once the first was done
    assert standard[0] < large[-1]  # the standard picture did not wait behind it
    assert again[0] > medium[-1]  # a later large one did not overtake the waiting second size
