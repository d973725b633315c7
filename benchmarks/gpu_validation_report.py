"""The Markdown summary of a ``gpu_validation.py`` run, rendered from its JSON results.

Everything shown is in the JSON; this only picks the figures a reader looks for first.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e3 else f"{value:,.0f}"
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def render_markdown(results: dict[str, Any]) -> str:
    env = results.get("environment_after_build") or results["environment"]
    gpu = env.get("gpu", {})
    started = dt.datetime.fromtimestamp(results["started_unix_s"]).isoformat(timespec="seconds")
    device = gpu.get("name") if results["mode"] == "gpu" else None
    if results["mode"] == "sim":
        device = "greenai.sim's simulated GPU (rehearsal)"
    lines = [
        f"# greenai GPU validation: {device or 'no GPU'} ({results['date']})",
        "",
        f"- mode: **{results['mode']}**"
        + (f" ({results['no_gpu_reason']})" if results["mode"] != "gpu" else ""),
        f"- started {started}, budget {results['budget_s']:g} s"
        + (", **the watchdog ended the run**" if results.get("watchdog_fired") else ""),
        f"- GPU: {gpu.get('name')}, {gpu.get('sms')} SMs, {gpu.get('memory_gib')} GiB, driver "
        f"{gpu.get('nvml_driver')}, torch CUDA {gpu.get('torch_cuda')}"
        if gpu.get("name")
        else "- GPU: none found",
        f"- Python {env.get('python')}, torch {env['packages'].get('torch')}, nvcc "
        f"{env.get('nvcc')}, codecarbon installed: {_fmt(env.get('codecarbon_installed'))}",
        f"- greenai: {env.get('greenai', {}).get('build_info') or env.get('greenai')}",
        "",
        "## Sections",
        "",
    ]
    sections = results["sections"]
    lines += _table(
        ("section", "status", "seconds", "why / what went wrong"),
        [(s["title"], s["status"], s["seconds"], s["reason"] or "") for s in sections.values()],
    )
    goals = [(s["title"].split(".")[0], g) for s in sections.values() for g in s["goals"]]
    if goals:
        lines += ["## Goals", ""]
        lines += _table(
            ("§", "goal", "measured", "target", "met", "note"),
            [(n, g["name"], g["value"], g["target"], g["met"], g["note"]) for n, g in goals],
        )
    for key, render in (
        ("build", _build),
        ("metering", _metering),
        ("power_limit", _power),
        ("tests", _tests),
        ("kernels", _kernels),
        ("inference", _inference),
    ):
        section = sections[key]
        if section["data"]:
            lines += [f"## {section['title']}", ""]
            lines += render(section["data"])
    return "\n".join(lines) + "\n"


def _build(d: dict[str, Any]) -> list[str]:
    return [
        f"- `{d.get('command')}`: exit {d.get('returncode')} in {_fmt(d.get('seconds'))} s",
        f"- built with CUDA: **{_fmt(d.get('cuda'))}**; {d.get('build_info')}",
        *[f"- cmake: {m}" for m in d.get("cmake_messages", [])],
        "",
    ]


def _metering(d: dict[str, Any]) -> list[str]:
    load = d.get("load", {})
    lines = [
        f"- device: {d.get('device')}",
        f"- load: full = {load.get('full')}; half = {load.get('half')}",
        f"- calibration: {load.get('calibration')}",
        f"- codecarbon imported by the Meter path: {_fmt(d.get('codecarbon_imported_after'))}",
        f"- greenai: {d.get('greenai') or d.get('greenai_error')}",
        f"- nvidia-smi: {d.get('smi')}",
        "",
        "Energy per window (J) and the ratio of each method to the naive counter difference:",
        "",
    ]
    windows = d.get("windows", [])
    truth = any("true_j" in w for w in windows)  # --sim: the simulation's true energy
    rows = []
    for w in windows:
        smi = w.get("smi", {}).get("power.draw", {})
        poll = w.get("nvml_poll", {}).get("power_w", {})
        r = w.get("ratios", {})
        row = [
            w["name"],
            w["duration_s"],
            w.get("naive_j"),
            w.get("greenai_j"),
            smi.get("j"),
            poll.get("j"),
            r.get("greenai/naive"),
            r.get("smi power.draw/naive"),
            r.get("nvml power polled/naive"),
            w.get("counter_mean_w"),
            smi.get("cv"),
        ]
        rows.append([*row, r.get("greenai/true"), r.get("naive/true")] if truth else row)
    header = [
        "window",
        "s",
        "naive J",
        "greenai J",
        "smi J",
        "NVML poll J",
        "greenai/naive",
        "smi/naive",
        "poll/naive",
        "counter W",
        "smi cv",
    ]
    lines += _table([*header, "greenai/true", "naive/true"] if truth else header, rows)
    for phase, stats in d.get("update_period", {}).items():
        e, p = stats.get("energy", {}), stats.get("power", {})
        lines.append(
            f"- update period, {phase}: energy counter median {_fmt(e.get('median_ms'))} ms "
            f"(min {_fmt(e.get('min_ms'))}, max {_fmt(e.get('max_ms'))}, {e.get('intervals')} "
            f"intervals); power reading median {_fmt(p.get('median_ms'))} ms; "
            f"{_fmt(stats.get('polls_per_s'))} polls/s"
        )
    part = d.get("part_time", {})
    lines += [
        "",
        f"Part-time power readings: **{part.get('verdict')}** ({part.get('criterion')})",
        "",
    ]
    rows = [
        (k, v["cv_full"], v["cv_duty"], v["duty_mean_over_counter_mean"], v["swings"], v["off"])
        for k, v in part.items()
        if isinstance(v, dict)
    ]
    if rows:
        header = ("reading (steady part)", "cv full", "cv duty", "duty mean / counter", "swings")
        lines += _table((*header, "off"), rows)
    return lines


def _power(d: dict[str, Any]) -> list[str]:
    return [
        f"- device {d.get('device')}; limit set: {_fmt(d.get('limit_set_w'))} W "
        f"({d.get('why_this_limit')})",
        f"- set_limit_w returned {_fmt(d.get('set_returned'))}; permitted "
        f"{_fmt(d.get('permitted'))}; restore failures {d.get('restore_failures')}",
        *[f"- greenai said: {w}" for w in d.get("warnings", [])],
        *[f"- refused: {r['limit_w']:g} W: {r['reason']}" for r in d.get("refused", [])],
        f"- before: {d.get('before')}",
        f"- after: {d.get('after')}; unchanged: **{_fmt(d.get('unchanged'))}**",
        "",
    ]


def _tests(d: dict[str, Any]) -> list[str]:
    junit = d.get("junit") or {}
    lines = [
        f"- exit {d.get('returncode')} in {_fmt(d.get('seconds'))} s; counts "
        f"{junit.get('counts') or d.get('summary', {}).get('counts')}",
        *[f"- deselected `{x['test']}`: {x['reason']}" for x in d.get("deselected", [])],
        *[f"- ignored `{x['module']}`: {x['reason']}" for x in d.get("ignored", [])],
        *[f"- {folder}: {counts}" for folder, counts in junit.get("by_folder", {}).items()],
    ]
    failed = junit.get("failed") or d.get("summary", {}).get("failed", [])
    lines += [f"- FAILED `{f['test']}`: {f['message'][:160]}" for f in failed[:20]]
    lines += [f"- skipped x{n}: {why}" for why, n in junit.get("skip_reasons", {}).items()]
    return [*lines, ""]


def _kernels(d: dict[str, Any]) -> list[str]:
    lines = []
    q = d.get("quantize")
    if q:
        copy_bw = q["bytes"]["clone"] / (q["ms"]["clone"] * 1e-3)
        rows = [
            (
                name,
                ms * 1e3,
                q["bytes"][name] / (ms * 1e-3) / 1e9,
                q["bytes"][name] / (ms * 1e-3) / copy_bw,
            )
            for name, ms in q["ms"].items()
        ]
        lines += [f"quantize {q['shape']} on {q['device']}:", ""]
        lines += _table(("method", "us", "GB/s", "of copy bandwidth"), rows)
    s = d.get("sparse")
    if s:
        lines += [f"2:4 sparsity {s['shape']} float16 on {s['device']}:", ""]
        lines += _table(("method", "us"), [(n, ms * 1e3) for n, ms in s["ms"].items()])
    for key in ("quantize_error", "sparse_error"):
        if d.get(key):
            lines += [f"{key}:", "", "```", d[key].strip(), "```", ""]
    return lines


def _inference(d: dict[str, Any]) -> list[str]:
    lines = [
        f"- stack {d.get('stack')}: {_fmt(d.get('linear_params'))} Linear parameters, batch-1 "
        f"decode; greenai {d.get('greenai')}; codecarbon imported: "
        f"{_fmt(d.get('codecarbon_imported'))}",
        "",
    ]
    rows = [
        (
            name,
            v.get("tokens"),
            v.get("ms_per_token"),
            v.get("j_per_token"),
            v.get("mean_power_w"),
            v.get("co2_mg_per_token"),
            v.get("bytes_after"),
            v.get("max_relative_error"),
        )
        for name, v in d.get("variants", {}).items()
    ]
    lines += _table(
        ("model", "tokens", "ms/token", "J/token", "W", "mg CO2e/token", "bytes", "max rel err"),
        rows,
    )
    notes = [
        (n, v["quantize_note"]) for n, v in d.get("variants", {}).items() if v.get("quantize_note")
    ]
    return lines + [f"- {name}: {note}" for name, note in notes]
