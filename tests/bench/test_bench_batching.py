"""Benchmark: a class of students each asking a different generation, batching on and off.

Through the real service (its own process) with the cache off: concurrent
students, each a different generation (own prompt and seed), with batching on
and off (1 generation per UNet call, the same code), in the same run. Reported:
guided steps (image-steps) per second over all students, and each student's
time to first frame and to the final image.

On the CPU (`make bench`, tiny model): 1, 8 and 32 students, 20 steps, at
128 px (small latents: per-call overhead dominates, as for SD 1.5 on a GPU at
batch 1) and 512 px (a 2-core CPU is compute-bound there), 16 per UNet call.

BENCH_SD15=1 (a GPU machine): the SD 1.5-shaped random-weight model (the real
model's cost) in float16, 1, 8, 16, 32 and 64 students at 512 px, 25 steps,
the batch size left to the service (from the GPU's free memory), with the GPU's
memory and the fraction of the FLOP bound. The GPU suite runs the same rows
within its time budget (`python -m tests.bench.gpu_suite`).
"""

from __future__ import annotations

import os

from tests.bench.class_batching import class_service, classroom_view, measure_class
from tests.bench.models import build_sd15_shaped
from tests.bench.test_bench_stream import machine

SD15 = bool(os.environ.get("BENCH_SD15"))
STUDENTS = [int(n) for n in os.environ.get("BENCH_STUDENTS", "1,8,16,32,64" if SD15 else "1,8,32").split(",")]
SIZES = [int(n) for n in os.environ.get("BENCH_SIZES", "512" if SD15 else "128,512").split(",")]
STEPS = int(os.environ.get("BENCH_STEPS", "25" if SD15 else "20"))
# Generations per UNet call with batching on; 0: the service decides (from the GPU's free memory).
BATCH = int(os.environ.get("BENCH_BATCH", "0" if SD15 else "16"))


def report_rows(results: dict[tuple[int, int, str], dict[str, float]], sizes: list[int], students: list[int]) -> str:
    lines = [
        "| size | students | batching | guided steps/s | first frame p50 / p99 (s) | image p50 / p99 (s) "
        "| GPU memory peak |",
        "|---|---|---|---|---|---|---|",
    ]
    for size in sizes:
        for count in students:
            for mode in ("off", "on"):
                r = results.get((size, count, mode))
                if r is None:
                    continue
                memory = f"{r['gpu_memory_peak_bytes'] / 2**30:.1f} GiB" if r["gpu_memory_peak_bytes"] else "-"
                lines.append(
                    f"| {size} | {count} | {mode} | {r['guided_steps_per_s']:.1f} | "
                    f"{r['ttff_p50']:.2f} / {r['ttff_p99']:.2f} | "
                    f"{r['ttlf_p50']:.2f} / {r['ttlf_p99']:.2f} | {memory} |"
                )
            on, off = results.get((size, count, "on")), results.get((size, count, "off"))
            if on and off:
                gain = on["guided_steps_per_s"] / off["guided_steps_per_s"]
                lines.append(f"| {size} | {count} | on/off | **{gain:.2f}x** | | | |")
    return "\n".join(lines)


def test_batching_against_one_at_a_time(tiny_dir, tmp_path_factory):
    if SD15:
        model_env = {"CLASSROOM_MODEL": str(build_sd15_shaped(tmp_path_factory.mktemp("models") / "sd15-shaped"))}
    else:
        model_env = {"CLASSROOM_MODEL": "tiny", "CLASSROOM_TINY_DIR": str(tiny_dir)}
    results: dict[tuple[int, int, str], dict[str, float]] = {}
    batch_in_force = {}
    offset = 0
    for mode, batch in (("off", 1), ("on", BATCH or None)):
        with class_service(model_env, batch) as address:
            batch_in_force[mode] = classroom_view(address).max_batch_size
            measure_class(address, 2, min(SIZES), STEPS, 10_000 + offset)  # warm-up
            for size in SIZES:
                for students in STUDENTS:
                    offset += 1000
                    results[(size, students, mode)] = measure_class(address, students, size, STEPS, offset)

    model = "SD 1.5-shaped (random weights)" if SD15 else "tiny"
    print(f"\n## A class sharing one model\nmachine: {machine()}\n{model} model, {STEPS} steps, DPM-Solver++, "
          f"previews only; batching on = {batch_in_force['on']} generations per UNet call\n"
          + report_rows(results, SIZES, STUDENTS))  # fmt: skip
    for (_, students, _), r in results.items():
        assert r["frames"] == students * STEPS
