"""Running the parts: each in a forked child of its own session, killed at its deadline; the command line."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from tests.bench.gpu_suite.compile_start import part_compile_start
from tests.bench.gpu_suite.exactness import part_exactness
from tests.bench.gpu_suite.model_parts import part_build, part_device, part_probes, part_speed, part_startup
from tests.bench.gpu_suite.plan import GPU_PLAN, PART_ORDER, SMOKE_PLAN, Context, plain
from tests.bench.gpu_suite.report import summary
from tests.bench.gpu_suite.service_parts import part_batching, part_class_load, part_gpu_tests, part_stream

PARTS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "build": part_build,
    "device": part_device,
    "exactness": part_exactness,
    "compile_start": part_compile_start,
    "batching": part_batching,
    "stream": part_stream,
    "probes": part_probes,
    "startup": part_startup,
    "gpu_tests": part_gpu_tests,
    "class_load": part_class_load,
    "speed": part_speed,
}
# Without --budget-s: what a GPU session's 10 minutes leave after installing and starting (gpu_run.sh).
GPU_BUDGET_S, SMOKE_BUDGET_S = 540.0, 400.0


def _child(name: str, ctx: Context, result: Path, log: Path) -> None:
    """In the forked child: a session of its own (so its services die with it), output to the log."""
    os.setsid()
    descriptor = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.dup2(descriptor, 1)
    os.dup2(descriptor, 2)
    print(f"\n===== {name} =====", flush=True)
    try:
        outcome = {"status": "ok", "figures": PARTS[name](ctx)}
    except BaseException:  # whatever happened, the part reports it and the suite goes on
        traceback.print_exc()
        outcome = {"status": "failed", "error": traceback.format_exc()[-2000:]}
    with contextlib.suppress(Exception):
        result.write_text(json.dumps(outcome, default=plain))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run_part(name: str, ctx: Context, log: Path) -> dict[str, Any]:
    """Run one part in a child process until it ends or its deadline passes (then it is killed)."""
    result = ctx.work / f"{name}.result.json"
    for stale in (result, ctx.partial):
        stale.unlink(missing_ok=True)
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        _child(name, ctx, result, log)
    timed_out = False
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() > ctx.deadline:
            timed_out = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            break
        time.sleep(0.2)
    if result.exists():
        outcome = json.loads(result.read_text())
    else:
        outcome = {
            "status": "timed out" if timed_out else "died",
            "error": f"no result after {ctx.deadline - started:.0f} s",
        }
    if "figures" not in outcome and ctx.partial.exists():
        outcome["figures"] = json.loads(ctx.partial.read_text()) | {"partial": True}
    outcome["seconds"] = time.monotonic() - started
    return outcome


def main(argv: list[str] | None = None) -> int:
    import tests.bench.gpu_suite as suite  # the package's docstring describes the command

    parser = argparse.ArgumentParser(prog="python -m tests.bench.gpu_suite", description=suite.__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for figures.json, summary.md, suite.log")
    parser.add_argument("--smoke", action="store_true", help="the tiny model, small sizes: the CPU's check")
    parser.add_argument("--budget-s", type=float, help="the whole suite's seconds (540; 400 with --smoke)")
    parser.add_argument("--parts", help=f"comma-separated, from {','.join(PART_ORDER)} (default: the plan's)")
    parser.add_argument("--work", type=Path, help="models and scratch (default: a temporary folder)")
    parser.add_argument("--students-on", help="class sizes with batching on, e.g. 1,8,32 (default: the plan's)")
    parser.add_argument("--students-off", help="class sizes with batching off, e.g. 1,32 (default: the plan's)")
    parser.add_argument(
        "--compile-buckets", help="compile_start's buckets, e.g. 8,32,64; '' for the service's default (all)"
    )
    args = parser.parse_args(argv)
    # Children are forked: the parent must never initialise CUDA (this check does not).
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # Every part measures the UNet uncompiled unless it says otherwise (services it starts inherit this).
    os.environ.setdefault("CLASSROOM_UNET_COMPILE", "off")
    if not args.smoke and not torch.cuda.is_available():
        print(
            "gpu suite: no CUDA device here; the suite measures a GPU. On a CPU, --smoke runs the same parts "
            "with the tiny model.",
            file=sys.stderr,
        )
        return 2
    plan = SMOKE_PLAN if args.smoke else GPU_PLAN
    for flag, name in ((args.students_on, "students_on"), (args.students_off, "students_off")):
        if flag:
            plan = replace(plan, **{name: tuple(int(n) for n in flag.split(","))})
    if args.compile_buckets is not None:
        plan = replace(plan, compile_buckets=args.compile_buckets)
    budget = args.budget_s or (SMOKE_BUDGET_S if args.smoke else GPU_BUDGET_S)
    parts = args.parts.split(",") if args.parts else list(plan.parts)
    if unknown := set(parts) - set(PART_ORDER):
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    if "build" not in parts:
        parts.insert(0, "build")  # cheap when the models are there already
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu-suite-"))
    work.mkdir(parents=True, exist_ok=True)
    log = args.out / "suite.log"
    log.write_text("")
    started = time.monotonic()
    end = started + budget
    figures: dict[str, Any] = {
        "suite": {
            "smoke": args.smoke,
            "budget_s": budget,
            "plan": asdict(plan),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "parts": {},
        }
    }
    for name in (p for p in PART_ORDER if p in parts):
        left = end - time.monotonic()
        if left < 10:
            figures["suite"]["parts"][name] = {"status": "not reached", "seconds": 0.0}
            continue
        deadline = time.monotonic() + min(plan.budgets.get(name, left), left - 3)
        ctx = Context(plan=plan, work=work, figures=figures, deadline=deadline, partial=work / f"{name}.partial.json")
        outcome = run_part(name, ctx, log)
        figures["suite"]["parts"][name] = {k: v for k, v in outcome.items() if k != "figures"}
        if "figures" in outcome:
            figures[name] = outcome["figures"]
        print(f"{name}: {outcome['status']} in {outcome['seconds']:.0f} s", flush=True)
        write_figures(args.out, figures)
    figures["suite"]["seconds"] = time.monotonic() - started
    write_figures(args.out, figures)
    print(f"suite: {figures['suite']['seconds']:.0f} s; figures in {args.out}", flush=True)
    return 0 if all(p["status"] == "ok" for p in figures["suite"]["parts"].values()) else 1


def write_figures(out: Path, figures: dict[str, Any]) -> None:
    (out / "figures.json").write_text(json.dumps(figures, indent=1, default=plain))
    (out / "summary.md").write_text(summary(figures))
