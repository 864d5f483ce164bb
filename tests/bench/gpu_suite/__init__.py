"""The GPU suite: every figure of the SD 1.5-shaped benchmarks in one run, within a hard time budget.

    python -m tests.bench.gpu_suite --out DIR [--smoke] [--budget-s 540] [--parts batching,speed]
                                    [--students-on 1,8,32] [--students-off 1,32] [--compile-buckets 8,32,64]

Parts, in this order (see docs/benchmarks.md, "The GPU suite"): the models
(built from configs), the device with its FLOP bound and SDPA check, the
batched step against each generation's own bit for bit (`exactness.py`), the
service started with its UNet compiled from a cold and then a warm compile
cache with classes through it (`compile_start.py`), the stream against
diffusers' pipeline in alternating pairs with the ratio's interval, the
probes' host copies and the joint step's guidance, scheduler and copies with a
profile of the GPU's idle time and the VAE decode batched, a class batching on
and off, the GPU tests, the speed options with their difference from the
pipeline, a class's generations starting (as before and now), and the class
load test. The GPU plan runs what stage 20 still reads (the models, the device, the
exactness, the compiled start, the class and the stream); `--parts` runs the others.

Each part runs in a child process of its own session with its own deadline: a
part that fails, runs out of memory or hangs is killed (with the services it
started) and the others' figures stand. The figures go to DIR/figures.json and
DIR/summary.md as each part ends; children's output goes to DIR/suite.log.

Its modules: `plan.py` (what a run measures, and what each part reads),
`model_parts.py` (the parts that run the model in this process), `exactness.py`
and `compile_start.py` (a part each),
`service_parts.py` (those that go through the service or its tests),
`run.py` (each part in a child, within its deadline), `report.py` (summary.md).

`--smoke` runs the same code on the `tiny` model with small sizes (the CPU's
check that the suite works, `tests/integration/test_gpu_suite_smoke.py`).
"""

from tests.bench.gpu_suite.plan import GPU_PLAN, PART_ORDER, SMOKE_PLAN, Context, Plan
from tests.bench.gpu_suite.report import summary
from tests.bench.gpu_suite.run import PARTS, main, run_part

__all__ = ["GPU_PLAN", "PARTS", "PART_ORDER", "SMOKE_PLAN", "Context", "Plan", "main", "run_part", "summary"]
