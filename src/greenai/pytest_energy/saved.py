"""A pytest session as a greenai run record (``--energy-save``), and reading one back.

The file is an ordinary greenai run record (:mod:`greenai.report.records`), so
``greenai report session.json --html out.html`` renders it:

- The top-level result is the session: its energy per device is the sum over
  the metered tests (their call phases, every run; setup, teardown and tests
  not metered are not counted), its duration runs from the first metered test's
  start to the last one's end (so its mean power is over that span), and CO2e,
  cost, GPU-hours and facility energy are the tests' sums.
- ``windows`` are the tests, in the order they started, each named by its node
  id. A test run N times (``--energy-repeat``) has windows ``run 1`` ... ``run N``;
  ``energy.measure()`` blocks are windows inside the run they belong to.
- Each test's ``metadata["pytest"]`` holds what the summary table shows: the
  figures the budget was checked against (medians over the runs), the budget,
  each check, the status, the outcome, the worker. ``--energy-compare`` reads
  those figures.
- The top-level ``metadata`` is the machine's (as for any run) plus
  ``metadata["pytest"]``: ``format`` ``"greenai-pytest"``, ``format_version`` 1,
  the options, the notes and the workers.

Timelines are shifted to count from the session's start. The session's own
power timeline is the tests' timelines one after another (a NaN sample between
two tests, where nothing was metered); when tests overlapped in time (pytest-xdist
workers) there is no single timeline and the session's is left empty.
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from greenai.pytest_energy.budget import Figures
from greenai.report.records import read_record, write_record
from greenai.tracking.result import PowerTimeline, Result

FORMAT = "greenai-pytest"
"""``metadata["pytest"]["format"]`` of a record written by ``--energy-save``."""

FORMAT_VERSION = 1
"""The ``metadata["pytest"]["format_version"]`` this greenai writes and reads."""


def session_result(
    tests: Sequence[tuple[Result, Mapping[str, Any]]],
    *,
    name: str,
    session: Mapping[str, Any],
) -> Result:
    """The session as one :class:`Result` whose windows are the tests.

    Args:
        tests: Each metered test's result (its tracker's) and its ``metadata["pytest"]``.
        name: The session's name in reports.
        session: Extra fields for the top-level ``metadata["pytest"]`` (options, notes).
    """
    ordered = sorted(tests, key=lambda t: t[0].start_unix_s)
    run_id = str(uuid.uuid4())
    pytest_meta: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tests": len(ordered),
        **session,
    }
    if not ordered:
        return Result(
            name=name,
            start_unix_s=0.0,
            duration_s=0.0,
            energy_by_device_j={},
            sources={},
            kinds={},
            run_id=run_id,
            metadata={"pytest": pytest_meta},
        )
    start_unix_s = min(r.start_unix_s for r, _ in ordered)
    end_unix_s = max(r.start_unix_s + r.duration_s for r, _ in ordered)
    energy: dict[str, float] = {}
    sources: dict[str, Any] = {}
    kinds: dict[str, Any] = {}
    reasons: list[str] = []
    windows = []
    for result, meta in ordered:
        for device, energy_j in result.energy_by_device_j.items():
            energy[device] = energy.get(device, 0.0) + energy_j
            sources.setdefault(device, result.sources[device])
            kinds.setdefault(device, result.kinds[device])
        reasons += [f"{result.name}: {reason}" for reason in result.partial_reasons]
        offset_s = result.start_unix_s - start_unix_s
        windows.append(replace(_shifted(result, offset_s, run_id), metadata={"pytest": dict(meta)}))
    co2 = [r.co2_kg for r, _ in ordered]
    cost = [r.cost_usd for r, _ in ordered]
    co2_kg = None if any(c is None for c in co2) else math.fsum(c for c in co2 if c is not None)
    cost_usd = None if any(c is None for c in cost) else math.fsum(c for c in cost if c is not None)
    total_j = math.fsum(energy.values())
    intensity = None
    if co2_kg is not None and total_j > 0:
        pue = float(ordered[0][0].accounting.get("pue", 1.0) or 1.0)
        intensity = co2_kg * 1e3 / (total_j / 3.6e6 * pue)
    metadata = {**ordered[0][0].metadata, "pytest": pytest_meta}
    return Result(
        name=name,
        start_unix_s=start_unix_s,
        duration_s=end_unix_s - start_unix_s,
        energy_by_device_j=energy,
        sources=sources,
        kinds=kinds,
        partial=bool(reasons),
        partial_reasons=tuple(reasons),
        windows=tuple(windows),
        timeline=_merged_timeline(windows, list(energy)),
        run_id=run_id,
        metadata=metadata,
        co2_kg=co2_kg,
        cost_usd=cost_usd,
        intensity_g_per_kwh=intensity,
        accounting=_summed_accounting([r.accounting for r, _ in ordered]),
    )


_SUMMED = ("gpu_hours", "facility_energy_kwh")
"""Accounting fields that add up over the tests; the rest (location, prices) are settings."""


def _summed_accounting(accountings: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The first test's accounting, with the quantities that add up summed over all tests."""
    merged = dict(accountings[0])
    for key in _SUMMED:
        values = [a.get(key) for a in accountings]
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            merged[key] = math.fsum(float(v) for v in values if v is not None)
    return merged


def _shifted(result: Result, offset_s: float, run_id: str) -> Result:
    """``result`` with its offset and timeline counted from the session's start."""
    timeline = PowerTimeline(
        times_s=[t + offset_s for t in result.timeline.times_s],
        power_w=result.timeline.power_w,
    )
    return replace(
        result,
        run_id=run_id,
        offset_s=result.offset_s + offset_s,
        timeline=timeline,
        windows=tuple(_shifted(w, offset_s, run_id) for w in result.windows),
        metadata={},
    )


def _merged_timeline(tests: Sequence[Result], devices: list[str]) -> PowerTimeline:
    """The tests' power samples one after another; empty when tests overlapped in time."""
    times: list[float] = []
    power: dict[str, list[float]] = {d: [] for d in devices}
    end_s = -math.inf
    for test in tests:
        samples = list(test.timeline.times_s)
        if not samples:
            continue
        if samples[0] < end_s:
            return PowerTimeline((), {})
        if times:  # nothing was metered between two tests: break the line there
            times.append((end_s + samples[0]) / 2)
            for d in devices:
                power[d].append(math.nan)
        times += samples
        for d in devices:
            values = list(test.timeline.power_w.get(d, ()))
            values += [math.nan] * (len(samples) - len(values))
            power[d] += values[: len(samples)]
        end_s = samples[-1]
    return PowerTimeline(times, power)


def save(path: str | os.PathLike[str], result: Result) -> Path:
    """Write the session's record atomically (see :func:`greenai.report.records.write_record`)."""
    return write_record(path, result)


def load_baseline(path: str | os.PathLike[str]) -> dict[str, Figures]:
    """The figures of each test in a record written by ``--energy-save``, by node id.

    Raises:
        ValueError: The file is not such a record (the message says why).
        OSError: It cannot be read.
    """
    result = read_record(path)
    meta = result.metadata.get("pytest")
    if not isinstance(meta, Mapping) or meta.get("format") != FORMAT:
        raise ValueError(
            f"{path} is a greenai run record, but not one written by pytest --energy-save"
        )
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{path} has pytest format_version {version!r}; this greenai reads {FORMAT_VERSION}"
        )
    baseline: dict[str, Figures] = {}
    for window in result.windows:
        test = window.metadata.get("pytest")
        if not isinstance(test, Mapping) or test.get("figures") is None or window.name is None:
            continue
        try:
            baseline[window.name] = Figures.from_dict(test["figures"])
        except ValueError as e:
            raise ValueError(f"{path}: test {window.name!r}: {e}") from e
    return baseline
