"""tests/bench/gpu_run.sh without a GPU stops at once, and the stream's interval says when it resolves the target.

The script's smoke run on the CPU, every part with the tiny model, is
test_gpu_suite_smoke.py's (one run of the script for both).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.bench.gpu_suite.service_parts import ratio_interval

ROOT = Path(__file__).resolve().parents[2]


def gpu_run(out: Path, *arguments: str, timeout: float) -> subprocess.CompletedProcess:
    env = os.environ | {"PY": sys.executable, "OUT": str(out), "OMP_NUM_THREADS": "1", "GPU_BUNDLE": ""}
    command = ["sh", "tests/bench/gpu_run.sh", *arguments]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


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
