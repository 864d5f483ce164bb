"""The GPU suite runs on the CPU with the tiny model and reports every section (its smoke test).

The suite is what a GPU session runs once, with no chance to fix it there: this
runs the same script (tests/bench/gpu_run.sh, once, with --smoke), parts and
reports at small sizes, and checks that each part ended well and reported
figures that make sense. No time is checked here.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench.gpu_suite import PART_ORDER, SMOKE_PLAN, summary

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-suite")
    work = tmp_path_factory.mktemp("gpu-suite-work")
    env = os.environ | {"PY": sys.executable, "OUT": str(out), "OMP_NUM_THREADS": "1", "GPU_BUNDLE": ""}
    command = ["sh", "tests/bench/gpu_run.sh", "--smoke", "--work", str(work)]  # every part of the smoke plan
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert (out / "figures.json").exists(), run.stdout[-3000:] + run.stderr[-3000:]
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads((out / "figures.json").read_text())
    result["summary.md"] = (out / "summary.md").read_text()
    return result


def test_every_part_ends_well(figures):
    parts = figures["suite"]["parts"]
    assert list(parts) == list(PART_ORDER)
    failed = {name: part.get("error", "")[-600:] for name, part in parts.items() if part["status"] != "ok"}
    assert not failed, failed


def test_the_device_section_counts_flops_and_sdpa(figures):
    device = figures["device"]
    assert device["guided_step_tflop"] > 0 and device["matmul_tflops"] > 0 and device["bound_steps_per_s"] > 0
    assert device["attention_layers"] > 0
    assert device["sdpa"], "every attention layer should run PyTorch's scaled-dot-product attention"
    assert device["max_batch_size"] >= 1


def test_batching_reports_every_row_on_and_off(figures):
    batching = figures["batching"]
    rows = {(row["mode"], row["students"]): row for row in batching["rows"]}
    assert set(rows) == {("on", n) for n in SMOKE_PLAN.students_on} | {("off", n) for n in SMOKE_PLAN.students_off}
    for row in rows.values():
        assert row["frames"] == row["students"] * SMOKE_PLAN.steps
        assert row["guided_steps_per_s"] > 0 and row["fraction_of_bound"] > 0
        assert 0 < row["ttff_p50"] <= row["ttff_p99"] <= row["ttlf_p99"]
    both = set(SMOKE_PLAN.students_on) & set(SMOKE_PLAN.students_off)
    assert set(batching["gain_on_over_off"]) == {str(n) for n in both}


def test_stream_probes_and_decode_are_measured(figures):
    assert figures["stream"]["ratio"] > 0 and len(figures["stream"]["stream_s"]) == SMOKE_PLAN.stream_repetitions
    for row in figures["probes"]["classes"]:
        assert row["unet_step_s"] > 0 and row["probe_copies_s"] > 0 and row["copied_bytes_per_step"] > 0
    assert figures["probes"]["profile"]["steps"] == 5 and "aten::" in figures["probes"]["profile"]["top_ops"]
    assert figures["probes"]["vae_decode"]["gain"] > 0


def test_a_class_starting_is_measured_as_before_and_now(figures):
    startup = figures["startup"]
    assert startup["students"] == SMOKE_PLAN.startup_students
    seconds = startup["seconds_per_generation"]
    assert set(seconds) == {"as before", 'new prompts, "" kept', "prompts kept"} and min(seconds.values()) > 0
    assert startup["ratio_to_before"]["as before"] == 1.0


def test_gpu_tests_and_the_class_load_ran(figures):
    tests = figures["gpu_tests"]
    assert tests["exit_code"] == 0 and tests["outcomes"].get("passed", 0) >= 1 and not tests["failed"]
    load = figures["class_load"]
    assert load["streams"] > 0 and load["unexpected_errors"] == 0 and load["incomplete"] == 0


def test_every_speed_option_is_measured_against_the_pipeline(figures):
    variants = figures["speed"]["variants"]
    assert [v["name"] for v in variants] == [name for name, _, _ in SMOKE_PLAN.speed_variants]
    for variant in variants:
        assert variant["guided_steps_per_s"] > 0 and not math.isnan(variant["image_mean_difference"])
        assert variant["gain"] > 0
    baseline = variants[0]
    assert baseline["within_tolerance"], baseline  # the default configuration keeps the pipeline's picture


def test_the_summary_has_every_section(figures):
    text = figures["summary.md"]
    for heading in ("## Device", "## A class batching", "## One student", "## Probes", "## GPU tests",
                    "## A class of", "## Speed options"):  # fmt: skip
        assert heading in text
    assert summary(figures).startswith("# GPU suite (smoke)")


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
