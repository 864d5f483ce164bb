"""Benchmark: the Shapes model, its speed on this machine and its accuracy table.

1. One 25-step generation at the native 64 px, streamed over gRPC with the
   lessons' probes, against diffusers' own pipeline on the same folder in the
   same process (median of several runs each, and their ratio). Target: at most
   2 s a picture on a 2-core CPU.
2. The model card's accuracy table: 200 seen-pair prompts at guidance 7.5 and
   0, and the held-out pairs, judged by `services/common/shapes_judge.py`
   (`python -m services.shapes evaluate` prints the same).
"""

from __future__ import annotations

import os
import statistics
import time

import torch

from services.common.api import pb
from services.inference.diffusion.models import SHAPES_DIR
from services.inference.diffusion.schedulers import make_scheduler
from services.inference.settings import InferenceSettings
from services.shapes.evaluate import evaluate_model, format_report
from tests.bench.test_bench_stream import machine
from tests.integration.helpers import collect, request
from tests.support.servers import running_server, stub_for

REPETITIONS = int(os.environ.get("BENCH_REPETITIONS", "7"))
STEPS = 25
PROBES = ["latent_preview", "predicted_x0_preview", "latent", "predicted_x0", "noise_predictions"]


def test_one_shapes_picture_against_the_pipeline():
    from diffusers import StableDiffusionPipeline

    settings = InferenceSettings(model="shapes", host="127.0.0.1", grpc_port=0, metrics_port=0, redis_url="",
                                 single_flight=False, rate_limit_per_minute=0)  # fmt: skip
    with running_server(settings) as server:
        model = server.classroom.model
        channel, stub = stub_for(server.address)
        pipe = StableDiffusionPipeline.from_pretrained(
            SHAPES_DIR, safety_checker=None, requires_safety_checker=False, torch_dtype=model.dtype
        ).to(model.device)
        pipe.set_progress_bar_config(disable=True)
        pipe.scheduler = make_scheduler("dpm_solver_pp", model.scheduler_config)
        spec = request("a red circle on the left", seed=1, num_inference_steps=STEPS, guidance_scale=7.5,
                       width=64, height=64, scheduler="dpm_solver_pp", include=PROBES)  # fmt: skip

        def direct() -> float:
            started = time.perf_counter()
            pipe(prompt=spec.prompt, num_inference_steps=STEPS, guidance_scale=7.5, width=64, height=64,
                 generator=torch.Generator("cpu").manual_seed(1))  # fmt: skip
            return time.perf_counter() - started

        def streamed() -> float:
            started = time.perf_counter()
            stream = collect(stub.Generate(spec))
            assert stream.status.source == pb.TRAJECTORY_SOURCE_COMPUTED  # measured, not replayed
            return time.perf_counter() - started

        direct(), streamed()  # warm-up
        direct_times, stream_times = [], []
        for _ in range(REPETITIONS):
            direct_times.append(direct())
            stream_times.append(streamed())
        channel.close()
    direct_median, stream_median = statistics.median(direct_times), statistics.median(stream_times)
    print(
        f"\n## Shapes: one picture\nmachine: {machine()}\n"
        f"{STEPS} steps of DPM-Solver++, 64x64, guidance 7.5, probes {', '.join(PROBES)}\n"
        f"| | median s | runs |\n|---|---|---|\n"
        f"| diffusers pipeline | {direct_median:.3f} | {', '.join(f'{t:.3f}' for t in direct_times)} |\n"
        f"| gRPC stream | {stream_median:.3f} | {', '.join(f'{t:.3f}' for t in stream_times)} |\n"
        f"ratio stream/direct: {stream_median / direct_median:.3f}; target: at most 2 s a picture"
    )
    assert stream_median > 0  # the figures are the result; no timed assertion


def test_shapes_accuracy_table():
    report = evaluate_model(prompts=int(os.environ.get("BENCH_SHAPES_PROMPTS", "200")))
    print(f"\n## Shapes: accuracy\nmachine: {machine()}\n{format_report(report)}")
    assert report["seen_g7.5"]["found"] > 0
