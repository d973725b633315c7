"""One run on a real NVIDIA GPU: everything GPU-side that greenai has only met in simulators.

Device command (one call on a fresh H100 machine, about 8 minutes, ``timeout_s=600``; the
files land in $OUT):

    bash benchmarks/gpu_validation.sh

which runs

    PYTHONUNBUFFERED=1 python3 benchmarks/gpu_validation.py --build --out "$OUT" --budget-s 420 \\
        2>&1 | tee "$OUT/gpu_validation.console.log"

The budget covers the build; a watchdog ends the run 30 s after it, writing what it has.

Sections, in the order they run (the numbers are issue 23's). Each records its own failure and
never stops the others; the JSON and Markdown are rewritten after every section, so a run cut
short keeps what it had. A section starts with the budget left minus the least the later ones
need, capped, and is skipped when that is below its own least.

0. ``build``: ``pip install --no-build-isolation --no-deps -e .`` (``--build``), its time, and
   whether ``greenai._C`` has CUDA; then the script starts itself again (same process), so the
   greenai it imports is the one just built.
2. ``metering`` (first: its data exists nowhere else): a known load (bf16 matmuls, back to back
   and 50 % duty-cycled) metered by greenai's ``Meter``, the naive NVML counter difference and
   ``nvidia-smi`` polling side by side over 0.3, 1 and 10 s windows; the counter's update
   period; whether power readings are part-time (see :mod:`gpu_validation_energy`).
3. ``power_limit``: the power limit set through ``greenai.control.PowerLimitGuard`` and given
   back, with what greenai said and the limit before and after (it sets the limit in force).
1. ``tests``: ``pytest -m gpu tests`` (among them the CUDA tests of tests/ops and
   tests/compress); where codecarbon is missing, the tests that need it are deselected, with
   the reason recorded (see :mod:`gpu_validation_compute`).
4. ``kernels``: the CUDA sections of ``bench_quantize.py`` and ``bench_sparse.py``, against the
   issue's goals.
5. ``inference``: a ~0.7B-parameter stack of batch-1 decode projections, fp16 vs greenai int8
   vs int4: time and energy per token.
6. The results: ``gpu_validation-<device>-<YYYY-MM-DD>.json`` and ``.md`` in ``--out``, beside
   the logs (``.build.log``, ``.pytest.log``, ``.pytest.xml``, ``.compute.log``).

Without a CUDA GPU (CI, a laptop) or with ``--dry-run``, every section is skipped with the
reason, the two files are still written, and the exit status is 0. ``--sim`` rehearses
sections 2 and 3 against ``greenai.sim``'s simulated H100 behind ``pynvml``, and section 1's
pytest run (its GPU tests skip), with no GPU.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gpu_validation_compute as compute
import gpu_validation_energy as energy
from gpu_validation_host import SectionSkipped, end_running, environment, run_logged
from gpu_validation_report import render_markdown

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
FORMAT = "greenai-gpu-validation"
DEFAULT_BUDGET_S = 420.0
GRACE_S = 30.0
"""The watchdog ends the process this long after the budget, writing what it has."""


@dataclass(frozen=True)
class Section:
    """One part of the run. ``where`` it runs: "build" (with --build), "gpu" (a CUDA GPU),
    "nvml" (a GPU, or --sim's simulated one), "tests" (a GPU, or --sim as a rehearsal)."""

    key: str
    title: str
    where: str
    cap_s: float
    min_s: float
    run: Callable[[Run, SectionRecord], None]


class SectionRecord:
    """What one section found: ``data`` (kept even when the section fails), goals, status."""

    def __init__(self, run: Run, record: dict[str, Any], deadline: float) -> None:
        self.run = run
        self.record = record
        self.data: dict[str, Any] = record["data"]
        self.deadline = deadline

    def left_s(self) -> float:
        return self.deadline - time.monotonic()

    def goal(self, name: str, value: float | None, op: str, target: float, note: str = "") -> None:
        """Record a goal; ``value`` None (not measured) is never met."""
        met = None if value is None else (value >= target if op == ">=" else value <= target)
        self.record["goals"].append(
            {"name": name, "value": value, "target": f"{op} {target:g}", "met": met, "note": note}
        )

    def timed_out(self, what: str) -> None:
        self.record["status"] = "timeout"
        self.record["reason"] = what

    def save(self) -> None:
        self.run.save()


class Run:
    """The run's state: options, environment, results, budget, and the files it writes."""

    def __init__(self, args: argparse.Namespace, results: dict[str, Any]) -> None:
        self.args = args
        self.results = results
        self.started_mono = time.monotonic() - (time.time() - results["started_unix_s"])
        self.budget_s = float(results["budget_s"])
        self.out_dir = Path(args.out)
        self.json_path = self.out_dir / f"{results['stem']}.json"
        self.md_path = self.out_dir / f"{results['stem']}.md"
        self.current: str | None = None
        self.sim: Any = None
        self._lock = threading.RLock()

    @property
    def mode(self) -> str:
        return str(self.results["mode"])

    def remaining_s(self) -> float:
        return self.budget_s - (time.monotonic() - self.started_mono)

    def file(self, suffix: str) -> Path:
        """A side file of this run in the output folder (logs, JUnit XML)."""
        return self.out_dir / f"{self.results['stem']}.{suffix}"

    def save(self) -> None:
        """Write the JSON, then the Markdown; a Markdown that fails to render says so and
        points to the JSON (the results are never lost to the summary)."""
        with self._lock:
            self.results["updated_unix_s"] = time.time()
            self.out_dir.mkdir(parents=True, exist_ok=True)
            _write_atomic(self.json_path, json.dumps(self.results, indent=1, default=str) + "\n")
            try:
                text = render_markdown(self.results)
            except Exception:
                text = (
                    f"# greenai GPU validation\n\nThe summary failed to render; the results are "
                    f"in {self.json_path.name}.\n\n```\n{traceback.format_exc()}```\n"
                )
            _write_atomic(self.md_path, text)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# --- sections ---------------------------------------------------------------------------------


def build(run: Run, rec: SectionRecord) -> None:
    """``pip install -e .`` with the project's default CMake options (CUDA AUTO)."""
    log = run.file("build.log")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-build-isolation",
        "--no-deps",
        "--no-index",
        "--disable-pip-version-check",
        "-v",
        "-e",
        ".",
        "-Cbuild-dir=build/gpu-validation",
    ]
    rec.data["command"] = " ".join(cmd)
    done = run_logged(cmd, log, timeout_s=rec.left_s() - 10, cwd=REPO)
    rec.data.update(done)
    text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
    rec.data["cmake_messages"] = [
        line.strip() for line in text.splitlines() if "greenai:" in line and "--" in line
    ][:10]
    if done["timed_out"]:
        rec.timed_out(f"the build ran past {rec.data['limit_s']:.0f} s")
        return
    if done["returncode"] != 0:
        raise RuntimeError(f"pip install failed (exit {done['returncode']}); see {log.name}")
    probe = subprocess.run(
        [sys.executable, "-c", "import json, greenai._C as C; print(json.dumps(C.build_info()))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=HERE,
    )
    if probe.returncode != 0:
        raise RuntimeError(f"greenai._C does not import after the build: {probe.stderr[-2000:]}")
    info = json.loads(probe.stdout.strip().splitlines()[-1])
    rec.data["build_info"] = info
    rec.data["cuda"] = bool(info.get("cuda"))
    rec.goal("greenai._C built with CUDA", float(bool(info.get("cuda"))), ">=", 1)


SECTIONS = (
    Section("build", "0. build greenai (pip install -e .)", "build", 240, 45, build),
    Section("metering", "2. metering a known load", "nvml", 75, 20, energy.section_metering),
    Section(
        "power_limit", "3. power limit set and given back", "nvml", 20, 5, energy.section_power
    ),
    Section("tests", "1. pytest -m gpu on the device", "tests", 150, 30, compute.section_tests),
    Section("kernels", "4. CUDA kernel benchmarks", "gpu", 90, 30, compute.section_kernels),
    Section("inference", "5. end-to-end inference", "gpu", 75, 20, compute.section_inference),
)


def skip_reason(run: Run, section: Section) -> str | None:
    """Why ``section`` does not run here, or None when it runs."""
    args = run.args
    no_gpu = run.results["no_gpu_reason"]
    if section.where == "build":
        if not args.build:
            return "not asked (pass --build to build greenai first)"
        if run.mode == "dry-run":
            return f"nothing is built in a dry run: {no_gpu}"
    elif run.mode == "dry-run":
        return f"needs a CUDA GPU: {no_gpu}"
    elif run.mode == "sim" and section.where == "gpu":
        return "--sim rehearses the NVML sections and pytest; this one needs a real CUDA GPU"
    if args.sections and section.key not in args.sections:
        return f"not selected (--sections {','.join(args.sections)})"
    return None


def run_sections(run: Run, sections: tuple[Section, ...]) -> None:
    records = run.results["sections"]
    todo = [s for s in sections if records[s.key]["status"] in ("pending", "running")]
    reasons = {s.key: skip_reason(run, s) for s in todo}
    for i, section in enumerate(todo):
        record = records[section.key]
        if reasons[section.key] is not None:
            record.update(status="skipped", reason=reasons[section.key])
            print(f"[gpu_validation] {section.title}: skipped: {reasons[section.key]}")
            run.save()
            continue
        later_min = sum(s.min_s for s in todo[i + 1 :] if reasons[s.key] is None)
        limit = min(section.cap_s, run.remaining_s() - later_min)
        if limit < section.min_s:
            record.update(
                status="skipped",
                reason=f"budget: {max(limit, 0):.0f} s left for it, it needs {section.min_s:.0f} s",
            )
            run.save()
            continue
        record.update(status="running", limit_s=round(limit, 1), reason=None)
        run.current = section.key
        run.save()
        print(f"[gpu_validation] {section.title}: running (limit {limit:.0f} s)", flush=True)
        rec = SectionRecord(run, record, time.monotonic() + limit)
        t0 = time.monotonic()
        try:
            section.run(run, rec)
        except SectionSkipped as e:
            record.update(status="skipped", reason=str(e))
        except Exception as e:
            record.update(
                status="failed",
                reason=f"{type(e).__name__}: {e}",
                error=traceback.format_exc(limit=8)[-4000:],
            )
        else:
            if record["status"] == "running":
                record["status"] = "ok"
        record["seconds"] = round(time.monotonic() - t0, 2)
        run.current = None
        run.save()
        print(
            f"[gpu_validation] {section.title}: {record['status']} in {record['seconds']:.1f} s"
            + (f" ({record['reason']})" if record.get("reason") else ""),
            flush=True,
        )


# --- environment, mode, start and restart ------------------------------------------------------


def device_slug(name: str) -> str:
    """A file-name-safe form of a device name: letters, digits, '.', '_' and '-' only."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "unknown"


def new_results(
    args: argparse.Namespace, env: dict[str, Any], no_gpu: str | None
) -> dict[str, Any]:
    now = time.time()
    if args.sim:
        mode, device = "sim", "sim"
    elif args.dry_run or no_gpu is not None:
        mode, device = "dry-run", "no-gpu"
    else:
        mode, device = "gpu", device_slug(env["gpu"].get("name") or "gpu")
    date = dt.date.today().isoformat()
    return {
        "format": FORMAT,
        "version": 1,
        "mode": mode,
        "no_gpu_reason": "--dry-run given" if args.dry_run else no_gpu,
        "stem": f"gpu_validation-{device}-{date}",
        "date": date,
        "started_unix_s": now,
        "budget_s": args.budget_s,
        "argv": sys.argv[1:],
        "environment": env,
        "sections": {
            s.key: {
                "title": s.title,
                "status": "pending",
                "reason": None,
                "seconds": None,
                "limit_s": None,
                "data": {},
                "goals": [],
            }
            for s in SECTIONS
        },
    }


def restart_after_build(run: Run) -> None:
    """Start this script again (same process id), so the fresh editable install is imported."""
    argv = [a for a in sys.argv[1:] if a != "--build"]
    argv += ["--resume", str(run.json_path)]
    print("[gpu_validation] restarting to import the greenai just built", flush=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, str(Path(__file__).resolve()), *argv])


def start_watchdog(run: Run) -> None:
    """At budget + grace, write what there is (the running section as timed out), end the
    children still running, and exit 3."""
    left = run.remaining_s() + GRACE_S

    def fire() -> None:
        with run._lock:
            key = run.current
            if key is not None:
                run.results["sections"][key].update(
                    status="timeout", reason="the watchdog ended the run at budget + grace"
                )
            run.results["watchdog_fired"] = True
            run.save()
        print(f"[gpu_validation] watchdog: budget spent in section {key}", flush=True)
        end_running()
        os._exit(3)

    timer = threading.Timer(max(left, 1.0), fire)
    timer.daemon = True
    timer.start()


@contextmanager
def simulation(enabled: bool) -> Iterator[Any]:
    """The simulated GPU of ``--sim`` (one default H100, real time), else nothing."""
    if not enabled:
        yield None
        return
    from greenai.sim import simulated_nvml

    with simulated_nvml(1) as sim:
        yield sim


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default=str(HERE / "results"), help="output folder")
    parser.add_argument(
        "--budget-s",
        type=float,
        default=DEFAULT_BUDGET_S,
        help=f"wall-clock budget for the whole run, build included (default {DEFAULT_BUDGET_S:g})",
    )
    parser.add_argument(
        "--build",
        action="store_true",
        help="pip install -e . first, then restart (on a GPU; with --sim, a rehearsal)",
    )
    parser.add_argument("--dry-run", action="store_true", help="skip every GPU section")
    parser.add_argument(
        "--sim", action="store_true", help="rehearse sections 2 and 3 on greenai.sim"
    )
    parser.add_argument(
        "--windows",
        type=lambda s: tuple(float(x) for x in s.split(",")),
        default=energy.MeteringPlan.windows_s,
        help="metering windows in seconds (default 0.3,1,10)",
    )
    parser.add_argument(
        "--probe-s",
        type=float,
        default=energy.MeteringPlan.probe_s,
        help="how long to poll the energy counter for its update period (default 1)",
    )
    parser.add_argument(
        "--sections",
        type=lambda s: tuple(s.split(",")),
        default=(),
        help=f"run only these (comma-separated): {','.join(s.key for s in SECTIONS)}",
    )
    parser.add_argument("--resume", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = set(args.sections) - {s.key for s in SECTIONS}
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    env, no_gpu = environment()
    if args.resume:
        results = json.loads(Path(args.resume).read_text(encoding="utf-8"))
        results["environment_after_build"] = env
    else:
        results = new_results(args, env, no_gpu)
    run = Run(args, results)
    print(
        f"[gpu_validation] mode {run.mode}; results: {run.json_path}"
        + (f"; no GPU: {results['no_gpu_reason']}" if run.mode != "gpu" else ""),
        flush=True,
    )
    run.save()
    start_watchdog(run)
    if args.build and not args.resume:
        run_sections(run, SECTIONS[:1])
        if run.results["sections"]["build"]["status"] != "skipped":
            restart_after_build(run)
    with simulation(run.mode == "sim") as run.sim:
        run_sections(run, SECTIONS)
    results["finished_unix_s"] = time.time()
    run.save()
    print(render_markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
