"""Benchmark: a class of students each asking a different generation, batching on and off.

Through the real service (its own process) with the cache off: 1, 8 and 32
concurrent students, each a different 20-step generation (own prompt and seed),
with batching on (BENCH_BATCH generations per UNet call) and off (1, the same
code), in the same run. Reported: image-steps per second over all students, and
each student's time to first and last frame (p50, p95). Sizes: 128 px (small
latents: per-call overhead dominates, as for SD 1.5 on a GPU at batch 1) and
512 px (a 2-core CPU is compute-bound there; reported without a target).
"""

from __future__ import annotations

import asyncio
import os

from tests.bench.streams import crowd
from tests.bench.test_bench_stream import machine
from tests.integration.helpers import request
from tests.support.servers import start_inference_process, wait_until_serving

STUDENTS = [int(n) for n in os.environ.get("BENCH_STUDENTS", "1,8,32").split(",")]
SIZES = [int(n) for n in os.environ.get("BENCH_SIZES", "128,512").split(",")]
STEPS = int(os.environ.get("BENCH_STEPS", "20"))
BATCH = int(os.environ.get("BENCH_BATCH", "16"))


def messages(students: int, size: int, offset: int):
    return [
        request(
            f"a watercolor of animal number {offset + i}",
            seed=offset + i,
            num_inference_steps=STEPS,
            width=size,
            height=size,
            scheduler="dpm_solver_pp",
            include=["latent_preview"],
        )
        for i in range(students)
    ]


def test_batching_against_one_at_a_time(tiny_dir):
    results = {}
    offset = 0
    for batch in (1, BATCH):
        env = {
            "CLASSROOM_MODEL": "tiny",
            "CLASSROOM_TINY_DIR": str(tiny_dir),
            "CLASSROOM_REDIS_URL": "",
            "CLASSROOM_MAX_BATCH_SIZE": str(batch),
            "CLASSROOM_LOG_LEVEL": "WARNING",
        }
        process, address = start_inference_process(env)
        try:
            wait_until_serving(address, process=process)
            asyncio.run(crowd(address, messages(2, 128, 10_000 + batch)))  # warm-up
            for size in SIZES:
                for students in STUDENTS:
                    offset += 1000
                    results[(size, students, batch)] = asyncio.run(crowd(address, messages(students, size, offset)))
        finally:
            process.terminate()
            process.wait(60)

    print(f"\n## A class sharing one model\nmachine: {machine()}\ntiny model, {STEPS} steps, DPM-Solver++, "
          f"previews only; batching on = {BATCH} generations per UNet call\n"
          "| size | students | batching | image-steps/s | first frame p50 / p95 (s) | last frame p50 / p95 (s) |\n"
          "|---|---|---|---|---|---|")  # fmt: skip
    for size in SIZES:
        for students in STUDENTS:
            for batch in (1, BATCH):
                r = results[(size, students, batch)]
                assert r["frames"] == students * STEPS
                mode = "on" if batch > 1 else "off"
                first = f"{r['ttff_p50']:.2f} / {r['ttff_p95']:.2f}"
                last = f"{r['ttlf_p50']:.2f} / {r['ttlf_p95']:.2f}"
                print(f"| {size} | {students} | {mode} | {r['frames'] / r['wall']:.1f} | {first} | {last} |")
            on, off = results[(size, students, BATCH)], results[(size, students, 1)]
            gain = (on["frames"] / on["wall"]) / (off["frames"] / off["wall"])
            print(f"| {size} | {students} | on/off | **{gain:.2f}x** | | |")
