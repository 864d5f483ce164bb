"""The suite's figures as markdown (summary.md), section by section, for docs/benchmarks.md."""

from __future__ import annotations

import math
from typing import Any


def _f(value: Any, spec: str = ".2f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def summary(figures: dict[str, Any]) -> str:
    """The figures as markdown, section by section, for docs/benchmarks.md."""
    suite, device = figures["suite"], figures.get("device", {})
    lines = [
        f"# GPU suite{' (smoke)' if suite['smoke'] else ''}: {device.get('device', 'device not measured')}",
        "",
        f"{device.get('machine', '')}; started {suite['started']}; budget {suite['budget_s']:.0f} s; "
        f"model {suite['plan']['model']}, {suite['plan']['size']} px, {suite['plan']['steps']} steps",
        "",
    ]
    lines += _table(
        ["part", "status", "seconds"], [[n, p["status"], _f(p["seconds"], ".0f")] for n, p in suite["parts"].items()]
    )
    if device:
        lines += [
            "",
            "## Device",
            "",
            f"- {device['dtype']}; attention processors: {', '.join(device['attention'])}; SDPA calls in one UNet "
            f"call: {device['sdpa_calls']} for {device['attention_layers']} attention layers "
            f"(all SDPA: {device['sdpa']}); "
            f"UNet {device['unet_parameters'] / 1e6:.0f} M parameters",
            f"- one guided step: {device['guided_step_tflop'] * 1e3:.1f} GFLOP (counted); a large matrix product: "
            f"{device['matmul_tflops']:.3g} TFLOP/s; bound {_f(device['bound_steps_per_s'], '.1f')} guided "
            f"steps/s (stated for the H100: {device.get('stated_bound_steps_per_s', '-')})",
            f"- max batch {device['max_batch_size']} ({device['max_batch_source']}; "
            f"{device['bytes_per_generation'] / 2**30:.2f} GiB a generation, "
            f"{device['free_bytes'] / 2**30:.1f} GiB free)",
        ]
        for row in device.get("new_sizes", []):
            lines.append(
                f"- a UNet call for {row['generations']} generations, a size new to the process (cuDNN attention "
                f"{'on' if row['cudnn_attention'] else 'off'}): first {row['first_s'] * 1e3:.0f} ms, "
                f"again {row['again_s'] * 1e3:.0f} ms"
            )
        if joins := device.get("joins"):
            lines.append(
                f"- a class of {joins['students']} running, {joins['joining_each_step']} students starting between "
                f"each two steps: {joins['step_s_with_starts'] * 1e3:.0f} ms a step, against "
                f"{joins['step_s'] * 1e3:.0f} ms with none ({joins['extra_ms_per_start']:.1f} ms more a start; "
                f"a start on an idle device {joins['start_alone_ms']:.1f} ms)"
            )
    if batching := figures.get("batching"):
        lines += ["", f"## A class batching on (batch {batching.get('max_batch_on')}) and off", ""]
        lines += _table(
            [
                "students",
                "batching",
                "guided steps/s",
                "of bound",
                "first frame p50 / p99 s",
                "image p50 / p99 s",
                "GPU memory peak GiB",
            ],
            [
                [
                    str(r["students"]),
                    r["mode"],
                    _f(r["guided_steps_per_s"], ".1f"),
                    _f(r.get("fraction_of_bound"), ".1%"),
                    f"{_f(r['ttff_p50'])} / {_f(r['ttff_p99'])}",
                    f"{_f(r['ttlf_p50'])} / {_f(r['ttlf_p99'])}",
                    _f(r["gpu_memory_peak_bytes"] / 2**30, ".1f"),
                ]
                for r in batching["rows"]
            ],
        )
        gains = ", ".join(f"{n}: {g:.2f}x" for n, g in batching.get("gain_on_over_off", {}).items())
        lines += ["", f"On over off, by students: {gains or '-'}"]
        for skipped in batching.get("skipped", []):
            lines.append(f"Skipped (time): {skipped['mode']} at {skipped['students']}, ~{skipped['estimated_s']:.0f} s")
    if stream := figures.get("stream"):
        lines += [
            "",
            "## One student: the stream against diffusers' pipeline",
            "",
            f"pipeline median {_f(stream.get('pipeline_median_s'), '.3f')} s, stream median "
            f"{_f(stream.get('stream_median_s'), '.3f')} s, stream/pipeline **{_f(stream.get('ratio'), '.3f')}** "
            f"({stream.get('steps')} steps, {stream.get('size')} px)",
        ]
        if interval := stream.get("ratio_ci95"):
            medians = stream["median_ratio_ci95"]
            lines += [
                "",
                f"{stream['pairs']} alternating pairs: geometric mean ratio "
                f"{stream['geometric_mean_ratio']:.3f}, 95 % interval {interval[0]:.3f} to {interval[1]:.3f} "
                f"(ratio of medians, bootstrap: {medians[0]:.3f} to {medians[1]:.3f}); against "
                f"{stream['target']}: **{stream['resolves_target']}**",
            ]
    lines += _exactness(figures.get("exactness")) + _compile_start(figures.get("compile_start"))
    if probes := figures.get("probes"):
        lines += ["", "## Probes copied to the host, per step", ""]
        lines += _table(
            [
                "students",
                "UNet step ms",
                "probe copies ms",
                "copies / UNet",
                "guidance+scheduler+copies ms, together (joined)",
                "the same, one at a time",
                "gain",
                "bytes",
            ],
            [
                [
                    str(r["students"]),
                    _f(r["unet_step_s"] * 1e3, ".1f"),
                    _f(r["probe_copies_s"] * 1e3, ".2f"),
                    _f(r["copies_over_unet"], ".1%"),
                    f"{_f(r['finish_steps_s'] * 1e3, '.1f')} ({r.get('joined', '-')})",
                    _f(r.get("finish_steps_alone_s", math.nan) * 1e3, ".1f"),
                    _f(r.get("together_gain"), ".2f"),
                    str(r["copied_bytes_per_step"]),
                ]
                for r in probes.get("classes", [])
            ],
        )
        if profile := probes.get("profile"):
            lines += [
                "",
                f"Profile of {profile['steps']} steps at {profile['students']} students: wall "
                f"{profile['wall_s'] * 1e3:.0f} ms; GPU busy {_f(profile.get('gpu_busy_fraction'), '.1%')}; "
                f"largest gap between kernels {_f(profile.get('largest_gap_ms'), '.2f')} ms; gaps over 1 ms: "
                f"{profile.get('gaps_over_1ms', '-')}",
                "",
                "```",
                profile.get("top_ops", ""),
                "```",
            ]
        if vae := probes.get("vae_decode"):
            lines += [
                "",
                f"VAE decode of {vae['students']} finished latents: one at a time {vae['one_by_one_s']:.3f} s, "
                f"one call {vae['batched_s']:.3f} s ({vae['gain']:.2f}x)",
            ]
    if startup := figures.get("startup"):
        lines += ["", f"## A class of {startup['students']} starting together, per generation", ""]
        lines += _table(
            ["start", "ms a generation", "ratio to as before"],
            [
                [way, _f(seconds * 1e3, ".2f"), _f(startup["ratio_to_before"][way], ".2f")]
                for way, seconds in startup["seconds_per_generation"].items()
            ],
        )
    if tests := figures.get("gpu_tests"):
        lines += [
            "",
            "## GPU tests",
            "",
            f"{tests['outcomes']} in {tests['seconds']:.0f} s; exit code "
            f"{tests['exit_code']}; failed: {', '.join(tests['failed']) or 'none'}",
        ]
    if load := figures.get("class_load"):
        lines += ["", f"## A class of {load['students']} for {load['duration_s']:.0f} s", "", load.get("report", "")]
    if speed := figures.get("speed"):
        lines += ["", f"## Speed options, a class of {speed['students']} ({speed['steps']} steps)", ""]
        lines += _table(
            [
                "option",
                "compile s (one bucket; cache)",
                "guided steps/s",
                "gain",
                "image difference max / mean",
                "within the tests' tolerance",
            ],
            [
                [
                    v["name"],
                    f"{_f(v['compile_s'], '.0f')}"
                    + (f" ({'warm' if v.get('compiled_before') else 'cold'})" if v["compile"] != "off" else ""),
                    _f(v["guided_steps_per_s"], ".1f"),
                    _f(v.get("gain"), ".2f"),
                    f"{v['image_max_difference']} / {v['image_mean_difference']:.3f}",
                    str(v["within_tolerance"]),
                ]
                for v in speed["variants"]
            ],
        )
        if speed.get("not_reached"):
            lines.append(f"Not reached (time): {', '.join(speed['not_reached'])}")
    for name, part in suite["parts"].items():
        if part.get("error"):
            lines += ["", f"## {name}: {part['status']}", "", "```", part["error"], "```"]
    return "\n".join(lines) + "\n"


def _exactness(exactness: dict[str, Any] | None) -> list[str]:
    if not exactness:
        return []
    lines = [
        "",
        f"## The batched step against each generation's own, bit for bit ({exactness['device']}, "
        f"{exactness['dtype']}, a class of {exactness['students']})",
        "",
        f"All bit-equal: **{exactness.get('bit_equal', '-')}** ({exactness.get('rows_compared', '-')} rows)",
        "",
    ]
    return lines + _table(
        [
            "scheduler",
            "rows",
            "joined",
            "mismatched",
            "largest difference",
            "final latents equal",
            "waits for the device: later steps / first steps",
            "at the class's start",
        ],
        [
            [
                r["scheduler"] + (" (ancestral: alone)" if r["ancestral"] else ""),
                str(r["rows"]),
                str(r["joined_rows"]),
                str(r["mismatched_rows"]),
                _f(r["largest_difference"], ".3g"),
                str(r["final_latents_equal"]),
                f"{_waits(r.get('waits_other_steps'))} / {_waits(r.get('waits_first_steps'))}",
                _waits(r.get("waits_at_start")),
            ]
            for r in exactness["schedulers"]
        ],
    )


def _waits(waits: dict[str, int] | None) -> str:
    """How many times the worker waited for the device, and where (`exactness.counted_waits`)."""
    if waits is None:
        return "-"
    return f"{sum(waits.values())}" + (f" ({', '.join(f'{k} x{n}' for k, n in waits.items())})" if waits else "")


def _compile_start(start: dict[str, Any] | None) -> list[str]:
    if not start:
        return []
    buckets = ", ".join(map(str, start["buckets"]))
    lines = [
        "",
        f"## The service started compiled (buckets {buckets} of {start['default_buckets']} by default at "
        f"{start['max_batch']}; backend {start['backend']})",
        "",
    ]
    lines += _table(
        ["cache", "seconds to SERVING", "compile s", "s a bucket", "graphs loaded / compiled", "est. s, all buckets"],
        [
            [
                s["cache"],
                _f(s["seconds_to_serving"], ".1f"),
                _f(s.get("compile_s"), ".1f"),
                _f(s.get("compile_s_per_bucket"), ".1f"),
                _counts(s.get("cache_counts", {})),
                _f(s.get("estimated_s_all_default_buckets"), ".0f"),
            ]
            for s in start["starts"]
        ],
    )
    lines += ["", f"Warm start within 90 s: **{start.get('warm_start_within_90_s', '-')}**"]
    if start["rows"]:
        lines += ["", "Classes through the compiled service:", ""]
        lines += _table(
            ["students", "guided steps/s", "of bound", "image p50 / p99 s"],
            [
                [
                    str(r["students"]),
                    _f(r["guided_steps_per_s"], ".1f"),
                    _f(r.get("fraction_of_bound"), ".1%"),
                    f"{_f(r['ttlf_p50'])} / {_f(r['ttlf_p99'])}",
                ]
                for r in start["rows"]
            ],
        )
    return lines


def _counts(counts: dict[str, int]) -> str:
    return f"{counts.get('graph_hits', '-')} / {counts.get('graph_misses', '-')}"
