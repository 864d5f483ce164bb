"""Benchmark: one generation streamed over gRPC with every probe on, against diffusers' pipeline.

Both run the same saved model, seed and settings in the same process and run,
alternating, several times; the report is the median of each and their ratio.
Run with `make bench` (CPU, tiny model). On a GPU machine, BENCH_SD15=1 uses an
SD 1.5-shaped random-weight model in float16 instead.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path

import pytest
import torch

from services.common.api import pb
from services.inference.diffusion.schedulers import make_scheduler
from services.inference.settings import InferenceSettings
from tests.bench.models import build_sd15_shaped
from tests.integration.helpers import ALL_PROBES, collect, request
from tests.support.servers import running_server, stub_for

REPETITIONS = int(os.environ.get("BENCH_REPETITIONS", "5"))
STEPS = int(os.environ.get("BENCH_STEPS", "20"))
SIZE = 512


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU, {os.cpu_count()} cores"
    return f"{device} ({cpu}), torch {torch.__version__}, {torch.get_num_threads()} threads"


def ratio_table(
    what: str, unit: str, times: dict[str, list[float]], base: str, digits: int = 1, ratio_digits: int = 3
) -> str:
    """A markdown table: each row's median (seconds, shown in ms) and its ratio to row `base`'s median."""
    baseline = statistics.median(times[base])
    medians = {name: statistics.median(runs) for name, runs in times.items()}
    rows = [f"| {name} | {m * 1000:.{digits}f} | {m / baseline:.{ratio_digits}f} |" for name, m in medians.items()]
    return f"| {what} | median ms {unit} | ratio to {base} |\n|---|---|---|\n" + "\n".join(rows)


@pytest.fixture(scope="module")
def model_settings(tmp_path_factory, tiny_dir) -> InferenceSettings:
    # Every repetition must run the model: no cache, no single flight, no rate limit.
    computed = {"host": "127.0.0.1", "grpc_port": 0, "metrics_port": 0, "redis_url": "", "single_flight": False,
                "rate_limit_per_minute": 0}  # fmt: skip
    if os.environ.get("BENCH_SD15"):
        folder = build_sd15_shaped(tmp_path_factory.mktemp("models") / "sd15-shaped")
        return InferenceSettings(model=str(folder), **computed)
    return InferenceSettings(model="tiny", tiny_dir=tiny_dir, **computed)


def measure_stream_against_pipeline(
    settings: InferenceSettings, steps: int = STEPS, size: int = SIZE, repetitions: int = REPETITIONS
) -> dict:
    """One generation streamed with every probe on, and diffusers' pipeline, alternating: times and their ratio."""
    from diffusers import StableDiffusionPipeline

    with running_server(settings) as server:
        model = server.classroom.model
        channel, stub = stub_for(server.address)
        info = stub.GetModelInfo(pb.GetModelInfoRequest())
        model_dir = settings.tiny_dir if settings.model == "tiny" else Path(settings.model)
        device, dtype = model.device, model.dtype
        pipe = StableDiffusionPipeline.from_pretrained(
            model_dir, safety_checker=None, requires_safety_checker=False, torch_dtype=dtype
        ).to(device)
        pipe.set_progress_bar_config(disable=True)
        spec = request(
            "a lighthouse on a cliff at dawn, oil painting",
            seed=1,
            num_inference_steps=steps,
            guidance_scale=7.5,
            width=size,
            height=size,
            scheduler="dpm_solver_pp",
            include=ALL_PROBES,
        )
        pipe.scheduler = make_scheduler("dpm_solver_pp", model.scheduler_config)

        def direct() -> float:
            started = time.perf_counter()
            pipe(
                prompt=spec.prompt,
                num_inference_steps=steps,
                guidance_scale=7.5,
                width=size,
                height=size,
                generator=torch.Generator("cpu").manual_seed(1),
            )
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            return time.perf_counter() - started

        def streamed() -> tuple[float, int]:
            started = time.perf_counter()
            stream = collect(stub.Generate(spec))
            assert stream.status.source == pb.TRAJECTORY_SOURCE_COMPUTED  # measured, not replayed
            size = stream.header.ByteSize() + sum(f.ByteSize() for f in stream.frames) + stream.final.ByteSize()
            return time.perf_counter() - started, size

        direct(), streamed()  # warm-up
        direct_times, stream_times = [], []
        for _ in range(repetitions):
            direct_times.append(direct())
            seconds, streamed_bytes = streamed()
            stream_times.append(seconds)
        channel.close()

    direct_median, stream_median = statistics.median(direct_times), statistics.median(stream_times)
    return {
        "model": info.model_id,
        "device": info.device,
        "dtype": info.dtype,
        "steps": steps,
        "size": size,
        "streamed_bytes": streamed_bytes,
        "pipeline_s": direct_times,
        "stream_s": stream_times,
        "pipeline_median_s": direct_median,
        "stream_median_s": stream_median,
        "ratio": stream_median / direct_median,
    }


def stream_report(r: dict) -> str:
    return (
        f"model: {r['model']} on {r['device']} ({r['dtype']}); {r['steps']} steps, {r['size']}x{r['size']}, "
        f"DPM-Solver++, guidance 7.5, every probe on ({r['streamed_bytes'] / 1e6:.2f} MB streamed)\n"
        f"| | median s | runs |\n|---|---|---|\n"
        f"| diffusers pipeline | {r['pipeline_median_s']:.3f} | {', '.join(f'{t:.3f}' for t in r['pipeline_s'])} |\n"
        f"| gRPC stream | {r['stream_median_s']:.3f} | {', '.join(f'{t:.3f}' for t in r['stream_s'])} |\n"
        f"ratio stream/direct: {r['ratio']:.3f}"
    )


def test_stream_with_every_probe_against_the_pipeline(model_settings):
    result = measure_stream_against_pipeline(model_settings)
    print(f"\n## Stream vs direct pipeline\nmachine: {machine()}\n{stream_report(result)}")
    assert result["ratio"] > 0  # the figures are the result; no timed assertion
