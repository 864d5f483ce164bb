"""tests/bench/gpu_run.sh on the CPU: the stage's new parts run in its smoke mode, and without one it stops at once.

The GPU run happens once, with no chance to fix the script there: this runs the
script itself (not only the suite's module, as test_gpu_suite_smoke.py does) on
the tiny model, with the parts the compiled UNet and the batched step added, and
checks what they report.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.bench.gpu_suite import SMOKE_PLAN
from tests.bench.gpu_suite.service_parts import ratio_interval

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def gpu_run(out: Path, *arguments: str, timeout: float) -> subprocess.CompletedProcess:
    env = os.environ | {"PY": sys.executable, "OUT": str(out), "OMP_NUM_THREADS": "1"}
    command = ["sh", "tests/bench/gpu_run.sh", *arguments]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-run")
    work = tmp_path_factory.mktemp("gpu-run-work")
    parts = "exactness,compile_start,stream,probes"
    run = gpu_run(out, "--smoke", "--parts", parts, "--work", str(work), timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return json.loads((out / "figures.json").read_text()) | {"summary.md": (out / "summary.md").read_text()}


def test_the_batched_step_is_every_generations_own_bit_for_bit(figures):
    exactness = figures["exactness"]
    assert exactness["bit_equal"] and exactness["students"] == SMOKE_PLAN.exactness_students
    rows = {row["scheduler"]: row for row in exactness["schedulers"]}
    assert rows["dpm_solver_pp"]["joined_rows"] == rows["dpm_solver_pp"]["rows"] > 0
    assert rows["euler_ancestral"]["joined_rows"] == 0  # ancestral generations step alone


def test_the_compiled_service_starts_cold_then_warm_and_serves_a_class(figures):
    start = figures["compile_start"]
    cold, warm = start["starts"]
    assert (cold["cache"], warm["cache"]) == ("cold", "warm")
    assert cold["compiled_before"] is False and warm["compiled_before"] is True  # the same folder, found again
    assert len({note["folder"] for note in start["notes"]}) == 1
    assert cold["seconds_to_serving"] > cold["compile_s"] > 0 and warm["estimated_s_all_default_buckets"] > 0
    assert [row["students"] for row in start["rows"]] == list(SMOKE_PLAN.compile_students)
    assert all(row["guided_steps_per_s"] > 0 for row in start["rows"])


def test_the_stream_ratio_has_an_interval_and_the_probes_time_the_joint_step(figures):
    stream = figures["stream"]
    assert stream["pairs"] == SMOKE_PLAN.stream_repetitions
    low, high = stream["ratio_ci95"]
    assert low <= stream["geometric_mean_ratio"] <= high
    for row in figures["probes"]["classes"]:
        assert row["joined"] == row["students"] and row["finish_steps_s"] > 0 and row["finish_steps_alone_s"] > 0
    for heading in ("## The batched step", "## The service started compiled", "alternating pairs"):
        assert heading in figures["summary.md"]


def test_an_interval_resolves_the_target_only_when_it_lies_on_one_side():
    steady = ratio_interval([1.0] * 20, [1.0 + 0.001 * (i % 3) for i in range(20)])
    assert steady["resolves_target"] == "at most 1.05" and steady["ratio_ci95"][1] < 1.05
    slow = ratio_interval([1.0] * 20, [1.2 + 0.001 * (i % 3) for i in range(20)])
    assert slow["resolves_target"] == "above 1.05"
    noisy = ratio_interval([1.0, 1.0, 1.0], [0.7, 1.4, 1.05])
    assert noisy["resolves_target"] == "unresolved"
    assert ratio_interval([1.0], [1.0])["resolves_target"] == "too few repetitions"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine with CUDA runs the suite")
def test_without_a_gpu_the_script_stops_at_once_and_says_why(tmp_path):
    run = gpu_run(tmp_path, timeout=120)
    assert run.returncode == 2
    assert "no CUDA device" in run.stderr and "--smoke" in run.stderr
    assert not (tmp_path / "figures.json").exists()  # nothing was built or measured
