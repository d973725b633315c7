"""Sections 2 and 3 of ``gpu_validation.py``: metering side by side, and the power-limit guard.

Section 2 meters a known load three ways at once, over windows of 0.3, 1 and 10 s:

- greenai: one :class:`greenai.tracking.meter.Meter` (the tracking layer: joules only, no
  accounting, so CodeCarbon is never needed; the section records whether ``codecarbon`` got
  imported all the same), one window per measurement;
- naive: ``nvmlDeviceGetTotalEnergyConsumption`` read just before and just after, through
  ``pynvml`` directly;
- nvidia-smi: ``--query-gpu=timestamp,power.draw,... -lms 100`` running throughout, its
  ``power.draw`` samples inside the window averaged and multiplied by the window's length.

The load is a loop of bf16 8192x8192 matmuls whose length (number of matmuls) is fixed from a
calibration: "full" runs them back to back (cuBLAS spreads each over every SM); "half" runs
them 50 % duty-cycled, 20 ms on and 20 ms idle. Duty-cycling rather than a smaller problem,
because cuBLAS picks split-K and stream-K schedules that spread even a small matmul over every
SM, so how many SMs are busy is not the caller's to choose; the share of time busy is. Its
40 ms period is shorter than the power-averaging windows and no divisor of nvidia-smi's 100 ms,
which is what exposes a power reading that averages only part of the time ("part-time"): the
readings then swing from sample to sample, where a full-coverage average stays flat.

Besides, a thread polls ``nvmlDeviceGetPowerUsage`` and the instant and average power field
values every 10 ms, and two tight loops (idle, then under load) time the energy counter's and
the power reading's updates (the instruments are in :mod:`gpu_validation_sensors`, the loads
in :mod:`gpu_validation_loads`).

Section 3 sets the power limit through :class:`greenai.control.PowerLimitGuard` and gives it
back. The limit it sets is the one in force: the workplace's rules for lent GPUs forbid
changing a card's power limit, and setting the same value exercises the same path (range,
journal, the NVML call and its permission check, the restore) while leaving the card as found.
For the same reason the public ``EnergyTarget`` path is not run: its governor profiles several
limits. Where the enforced limit differs from the management limit nothing is set at all
(the guard restores the enforced value, which would change the card).
"""

from __future__ import annotations

import math
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpu_validation_host import SectionSkipped
from gpu_validation_loads import MatmulLoad, SimLoad
from gpu_validation_sensors import NvmlPoller, RawNvml, SmiPoller, update_period

if TYPE_CHECKING:
    from gpu_validation import Run, SectionRecord

SMI_POWER_FIELDS = ("power.draw", "power.draw.average", "power.draw.instant")
NVML_POWER_KEYS = ("power_w", "instant_w", "average_w")
PART_TIME_CV = 0.15
"""Coefficient of variation of power readings under the duty-cycled load above which (and
above 3x that under full load) the readings are taken to average only part of the time."""
STEADY_AFTER_S = 1.0
"""A window's steady part starts this long after it (clocks and averaged readings settle)."""
READINGS = {
    "nvml power usage": ("nvml_poll", "power_w"),
    "nvml average field": ("nvml_poll", "average_w"),
    "nvml instant field": ("nvml_poll", "instant_w"),
    "smi power.draw": ("smi", "power.draw"),
    "smi power.draw.average": ("smi", "power.draw.average"),
    "smi power.draw.instant": ("smi", "power.draw.instant"),
}
"""The power readings judged for part-time coverage: label -> (group, key) in readings()."""


@dataclass(frozen=True)
class MeteringPlan:
    """What section 2 runs. Units: s."""

    windows_s: tuple[float, ...] = (0.3, 1.0, 10.0)
    probe_s: float = 1.0
    idle_s: float = 1.0
    gap_s: float = 0.5
    duty_period_s: float = 0.04
    duty: float = 0.5
    matmul_n: int = 8192

    def seconds(self, windows_s: Sequence[float]) -> float:
        """About how long the section takes with these windows (setup included)."""
        return 8 + self.idle_s + 2 * self.probe_s + 2 * sum(w + self.gap_s for w in windows_s)


# --- measurements -------------------------------------------------------------------------------


def measure_window(
    name: str,
    work: Callable[[], dict[str, Any]],
    nvml: RawNvml,
    meter: Any,
    truth_j: Callable[[], float] | None = None,
) -> dict[str, Any]:
    """Run ``work`` (which returns once the GPU is done) inside one greenai window and between
    two raw counter reads; ``truth_j`` (``--sim`` only) reads the simulation's true energy."""
    window: AbstractContextManager[Any] = meter.window(name) if meter is not None else nullcontext()
    true0 = truth_j() if truth_j is not None else None
    e0 = nvml.energy_mj()
    t0, m0 = time.time(), time.monotonic()
    with window:
        info = work()
    m1, t1 = time.monotonic(), time.time()
    e1 = nvml.energy_mj()
    duration = m1 - m0
    naive_j = (e1 - e0) / 1000.0
    out = {
        "name": name,
        "t0_unix": t0,
        "t1_unix": t1,
        "duration_s": duration,
        "naive_j": naive_j,
        "counter_mean_w": naive_j / duration if duration > 0 else None,
        **info,
    }
    if truth_j is not None and true0 is not None:
        out["true_j"] = truth_j() - true0
    return out


def series_stats(values: Sequence[float], duration_s: float) -> dict[str, Any]:
    """Mean, coefficient of variation and mean x duration of power readings (W, J)."""
    if not values:
        return {"n": 0}
    mean = statistics.fmean(values)
    sd = statistics.pstdev(values) if len(values) > 1 else 0.0
    return {
        "n": len(values),
        "mean_w": mean,
        "cv": sd / mean if mean else None,
        "j": mean * duration_s,
    }


def readings(
    smi_rows: Sequence[dict[str, Any]],
    nvml_samples: Sequence[dict[str, Any]],
    t0: float,
    t1: float,
) -> dict[str, Any]:
    """nvidia-smi's and the NVML poller's power readings within ``[t0, t1]`` (Unix s), and the
    mean power from the energy-counter values the poller read there."""
    smi_in = [r for r in smi_rows if t0 <= r["t"] <= t1]
    nvml_in = [s for s in nvml_samples if t0 <= float(s["t"] or 0) <= t1]
    counter = [(float(s["t"] or 0), s["energy_mj"]) for s in nvml_in if s.get("energy_mj")]
    span = counter[-1][0] - counter[0][0] if len(counter) > 1 else 0.0
    return {
        "smi": {
            f: series_stats([r[f] for r in smi_in if r.get(f) is not None], t1 - t0)
            for f in SMI_POWER_FIELDS
            if any(f in r for r in smi_rows)
        },
        "nvml_poll": {
            k: series_stats([float(s[k]) for s in nvml_in if s.get(k) is not None], t1 - t0)
            for k in NVML_POWER_KEYS
        },
        "counter_mean_w": (counter[-1][1] - counter[0][1]) / 1e3 / span if span > 0 else None,
    }


def add_readings(
    window: dict[str, Any],
    smi_rows: Sequence[dict[str, Any]],
    nvml_samples: Sequence[dict[str, Any]],
) -> None:
    """Add the readings within the window (and, for windows of 3 s or more, within its steady
    part, from ``STEADY_AFTER_S`` on) and each method's ratio to the naive counter difference."""
    t0, t1 = window["t0_unix"], window["t1_unix"]
    whole = readings(smi_rows, nvml_samples, t0, t1)
    window["smi"], window["nvml_poll"] = whole["smi"], whole["nvml_poll"]
    if window["duration_s"] >= 3 * STEADY_AFTER_S:
        window["steady"] = readings(smi_rows, nvml_samples, t0 + STEADY_AFTER_S, t1)
    naive = window["naive_j"]
    ratios: dict[str, float | None] = {}
    if naive > 0:
        if window.get("greenai_j") is not None:
            ratios["greenai/naive"] = window["greenai_j"] / naive
        smi = window["smi"].get("power.draw", {})
        ratios["smi power.draw/naive"] = smi["j"] / naive if smi.get("n") else None
        poll = window["nvml_poll"]["power_w"]
        ratios["nvml power polled/naive"] = poll["j"] / naive if poll.get("n") else None
    if window.get("true_j"):
        ratios["greenai/true"] = (window.get("greenai_j") or math.nan) / window["true_j"]
        ratios["naive/true"] = naive / window["true_j"]
    window["ratios"] = ratios


def part_time_verdict(windows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Whether averaged power readings cover only part of the time, or lag, from the steady
    parts of the longest full and duty-cycled windows.

    Part-time: a reading that averages only a slice of each update period swings from sample to
    sample under the 40 ms duty cycle (coefficient of variation > ``PART_TIME_CV`` and > 3x its
    value under full load), where one averaging all the time stays flat. Off: its mean differs
    from the energy counter's mean power over the same span by more than 10 %.
    """
    steady = [w for w in windows if "steady" in w]
    full = [w for w in steady if w["name"].startswith("full")]
    half = [w for w in steady if w["name"].startswith("half")]
    if not full or not half:
        return {"verdict": "not measured (needs a full and a duty-cycled window of >= 3 s)"}
    sf_all = max(full, key=lambda w: w["duration_s"])["steady"]
    sh_all = max(half, key=lambda w: w["duration_s"])["steady"]
    out: dict[str, Any] = {
        "criterion": f"part-time: cv under the duty-cycled load > {PART_TIME_CV} and > 3x the cv "
        "under full load; off: mean differs from the counter's mean power by > 10 %",
    }
    counter_w = sh_all["counter_mean_w"]
    part_time = off = False
    for label, (group, key) in READINGS.items():
        sf, sh = sf_all[group].get(key, {}), sh_all[group].get(key, {})
        if not sf.get("n") or not sh.get("n"):
            continue
        cv_f, cv_h = sf["cv"] or 0.0, sh["cv"] or 0.0
        swings = cv_h > PART_TIME_CV and cv_h > 3 * cv_f
        ratio = sh["mean_w"] / counter_w if counter_w else None
        is_off = ratio is not None and abs(ratio - 1) > 0.1
        out[label] = {
            "cv_full": cv_f,
            "cv_duty": cv_h,
            "duty_mean_over_counter_mean": ratio,
            "swings": swings,
            "off": is_off,
        }
        if "instant" not in label:  # an instantaneous reading is meant to swing
            part_time = part_time or swings
            off = off or is_off
    out.update(part_time_suspected=part_time, off_suspected=off)
    out["verdict"] = (
        "averaged power readings look part-time" if part_time else "no part-time sign"
    ) + ("; their mean is off the counter's" if off else "; means agree with the counter")
    return out


# --- section 2 ----------------------------------------------------------------------------------


def _gpu0_nvml_index() -> int:
    try:
        from greenai import devices

        found = devices.probe_gpus([0])
        return int(getattr(found[0], "nvml_index", 0)) if found else 0
    except ImportError:
        return 0


def section_metering(run: Run, rec: SectionRecord) -> None:
    plan = MeteringPlan(windows_s=tuple(run.args.windows), probe_s=run.args.probe_s)
    windows_s = sorted(plan.windows_s)
    while windows_s and plan.seconds(windows_s) > rec.left_s():
        rec.data.setdefault("windows_dropped_for_budget", []).append(windows_s.pop())
    rec.data["plan"] = {**asdict(plan), "windows_s": windows_s}
    nvml_index = _gpu0_nvml_index()
    nvml = RawNvml(nvml_index)
    rec.data["device"] = nvml.describe()
    load: MatmulLoad | SimLoad = (
        SimLoad(run.sim) if run.sim is not None else MatmulLoad(plan.matmul_n)
    )
    rec.data["load"] = {
        "full": "matmuls back to back",
        "half": f"the same matmuls {plan.duty:.0%} duty-cycled, period "
        f"{plan.duty_period_s * 1e3:g} ms (cuBLAS spreads any matmul over every SM, so the SM "
        "count is not controllable)",
        "calibration": load.calibrate(),
    }
    rec.data["codecarbon_imported_before"] = "codecarbon" in sys.modules
    meter = _start_meter(rec)
    smi = _start_smi(run, rec, nvml_index)
    poller = NvmlPoller(nvml).start()
    windows: list[dict[str, Any]] = []
    rec.data["windows"] = windows
    truth = (lambda: float(run.sim.true_energy_j(0))) if run.sim is not None else None
    try:
        rec.data["update_period"] = {"idle": update_period(nvml, plan.probe_s)}
        idle = measure_window("idle", lambda: _sleep(plan.idle_s), nvml, meter, truth)
        windows.append(idle)
        runners: dict[str, Callable[[float], dict[str, Any]]] = {
            "full": load.run_full,
            "half": lambda s: load.run_duty(s, plan.duty_period_s, plan.duty),
        }
        for label, runner in runners.items():
            for w in windows_s:
                time.sleep(plan.gap_s)
                work = lambda w=w, runner=runner: runner(w)  # noqa: E731
                windows.append(measure_window(f"{label}-{w:g}s", work, nvml, meter, truth))
                rec.save()
        load.begin(plan.probe_s + 0.3)
        rec.data["update_period"]["full_load"] = update_period(nvml, plan.probe_s)
        load.end()
    finally:
        poller.stop()
        if smi is not None:
            smi.stop()
            rec.data["smi"] = {"fields": smi.fields, "missing": smi.missing, "rows": len(smi.rows)}
            rec.data["smi"]["stderr"] = smi.stderr[-500:]
        rec.data["nvml_poll"] = {"samples": len(poller.samples), "errors": poller.errors[:5]}
        load.close()
        _finish_meter(rec, meter, windows)
        _analyse(rec, windows, smi.rows if smi is not None else [], poller.samples)


def _analyse(
    rec: SectionRecord,
    windows: list[dict[str, Any]],
    smi_rows: Sequence[dict[str, Any]],
    samples: Sequence[dict[str, Any]],
) -> None:
    """Readings and ratios per window, the part-time verdict and the goals (windows >= 5 s:
    over shorter ones the naive difference is itself off by up to a counter update at each
    end)."""
    for window in windows:
        add_readings(window, smi_rows, samples)
    rec.data["part_time"] = part_time_verdict(windows)
    rec.data["codecarbon_imported_after"] = "codecarbon" in sys.modules
    for window in windows:
        if window["name"] == "idle" or window["duration_s"] < 5:
            continue
        ratio = window["ratios"].get("greenai/naive")
        rec.goal(
            f"|greenai / naive counter - 1|, {window['name']}",
            None if ratio is None else abs(ratio - 1),
            "<=",
            0.05,
            "this script's target",
        )
        smi_j = window["smi"].get("power.draw", {}).get("j")
        if window["name"].startswith("full") and smi_rows:
            ours = window.get("greenai_j")
            rec.goal(
                f"|greenai / nvidia-smi power.draw - 1|, {window['name']}",
                abs(ours / smi_j - 1) if ours and smi_j else None,
                "<=",
                0.1,
                "as tests/test_gpu.py asserts",
            )


def _sleep(seconds: float) -> dict[str, Any]:
    time.sleep(seconds)
    return {}


def _start_meter(rec: SectionRecord) -> Any:
    try:
        from greenai.tracking.meter import Meter

        return Meter("gpu-validation-metering", gpus=[0], cpu=False, dram=False).start()
    except Exception as e:
        rec.data["greenai_error"] = f"{type(e).__name__}: {e}"
        return None


def _finish_meter(rec: SectionRecord, meter: Any, windows: list[dict[str, Any]]) -> None:
    if meter is None:
        return
    result = meter.stop()
    rec.data["greenai"] = {
        "sources": dict(result.sources),
        "partial": result.partial,
        "partial_reasons": list(result.partial_reasons),
    }
    for window in windows:
        try:
            w = result.window(window["name"])
        except KeyError:
            continue
        window["greenai_j"] = w.energy_by_device_j.get("gpu0")
        window["greenai_duration_s"] = w.duration_s
        window["greenai_partial"] = w.partial


def _start_smi(run: Run, rec: SectionRecord, nvml_index: int) -> SmiPoller | None:
    smi = shutil.which("nvidia-smi")
    if run.sim is not None or smi is None:
        rec.data["smi"] = {
            "skipped": "--sim: nvidia-smi cannot see a simulated GPU"
            if run.sim is not None
            else "nvidia-smi not found on PATH"
        }
        return None
    poller = SmiPoller(smi, nvml_index)
    time.sleep(0.6)  # its first rows
    if not poller.rows and poller.exited():  # a field it would not take: the two that matter
        poller.stop()
        rec.data["smi_first_try"] = {"fields": poller.fields, "stderr": poller.stderr[-500:]}
        poller = SmiPoller(smi, nvml_index, fields=("timestamp", "power.draw"))
        time.sleep(0.6)
    return poller


# --- section 3 ----------------------------------------------------------------------------------


def section_power(run: Run, rec: SectionRecord) -> None:
    from greenai import devices
    from greenai.control import PowerLimitGuard

    found = devices.probe_gpus([0])
    if not found:
        raise RuntimeError("greenai finds no GPU 0 through NVML")
    gpu = found[0]
    nvml = RawNvml(int(getattr(gpu, "nvml_index", 0)))
    rec.data["device"] = {"name": gpu.name, "source": gpu.source, "repr": repr(gpu)}
    before = rec.data["before"] = nvml.limits()
    target_w = before["management_w"]
    if not isinstance(target_w, float):
        raise RuntimeError(f"NVML gives no power management limit: {target_w}")
    rec.data["limit_set_w"] = target_w
    rec.data["why_this_limit"] = "the limit in force: a lent card's power limit must not change"
    if before["enforced_w"] != target_w:
        # greenai's guard records the enforced limit as the original and would restore that
        # value, which would change the card's management limit: a finding, and no attempt.
        raise SectionSkipped(
            f"the enforced limit ({before['enforced_w']} W) differs from the management limit "
            f"({target_w} W); greenai would restore the enforced value, changing the card"
        )
    if run.sim is not None:
        run.sim.inject(0, "no_permission")
        rec.data["sim_fault"] = "no_permission (the likely outcome in a container)"
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        journal = Path(tmp) / "power_limits.json"
        guard = PowerLimitGuard([gpu], journal_path=journal)
        guard.__enter__()
        try:
            rec.data["set_returned"] = guard.set_limit_w(gpu, target_w)
            rec.data["during"] = nvml.limits()
            rec.data["changed_while_held"] = guard.changed
        finally:
            rec.data["restore_failures"] = guard.close()
        rec.data["journal_after"] = journal.read_text() if journal.exists() else None
    if run.sim is not None:
        run.sim.clear_faults(0)
    rec.data["permitted"] = guard.permitted
    rec.data["refused"] = [{"limit_w": r.limit_w, "reason": r.reason} for r in guard.refused]
    rec.data["recovered"] = guard.recovered
    rec.data["warnings"] = [f"{w.category.__name__}: {w.message}" for w in caught]
    rec.data["after"] = nvml.limits()
    keys = ("enforced_w", "management_w")
    unchanged = all(rec.data["before"].get(k) == rec.data["after"].get(k) for k in keys)
    rec.data["unchanged"] = unchanged
    rec.goal("power limit as found afterwards", float(unchanged), ">=", 1)
