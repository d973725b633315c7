"""Metering a test: the tracker around its call, its repeats, and the ``energy`` fixture.

Imported only when the first test is metered. Each metered test gets its own
:class:`greenai.Tracker` (accounting from ``greenai.toml``/``GREENAI_*`` like any
run, no history, no output files), started just before the call and stopped
just after it; ``--energy-repeat=N`` runs the call N times, each in a window
``run 1`` ... ``run N``, and the budget applies to the medians.

greenai never turns a sensor failure into a test failure: a tracker that
cannot start leaves the test unmetered (its budgets unmeasured), and the
warnings greenai would show (a sensor that stopped answering, CO2e charged at
the world average) are collected as notes for the summary instead of reaching
the test, where ``-W error`` would make them fail it.
"""

from __future__ import annotations

import statistics
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pytest

from greenai.core import clock as _clock
from greenai.pytest_energy import budget as _budget
from greenai.pytest_energy.budget import Check, DeviceFigure, Figures
from greenai.pytest_energy.options import Options
from greenai.tracker import Tracker
from greenai.tracking import finisher
from greenai.tracking.result import Result
from greenai.tracking.windows import Window

FIGURE_FIELDS = (
    "energy_j",
    "gpu_energy_j",
    "cpu_energy_j",
    "dram_energy_j",
    "co2_kg",
    "cost_usd",
    "duration_s",
    "mean_power_w",
)
"""The figures of :class:`~greenai.pytest_energy.budget.Figures` that are medians over runs."""


@contextmanager
def collect_warnings(notes: list[str]) -> Iterator[None]:
    """Record greenai's warnings into ``notes`` instead of showing them in the test."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for w in caught:
                text = str(w.message)
                if text not in notes:
                    notes.append(text)


def tracker_for(name: str, options: Options) -> Tracker:
    """A tracker for one test or block: the chosen devices, no history, no files.

    Under torchrun each rank's pytest meters its own tests (``gather="none"``): a
    budget holds for the process that runs the test, which never waits on ranks
    that may have selected other tests.
    """
    return Tracker(
        name,
        gpus=None if options.gpus is None else list(options.gpus),
        cpu=options.cpu,
        dram=options.dram,
        history=False,
        gather="none",
    )


def figures_of(runs: list[Result], *, virtual_clock: bool) -> Figures:
    """A test's figures: the median of each over its runs (one run: its own figures).

    A kind of device that was not metered has no figure (None), rather than 0 J,
    so that a GPU budget on a machine without a GPU is unmeasured, not met.
    """
    if not runs:
        raise ValueError("figures_of needs at least one run")
    per_run = [_run_figures(r) for r in runs]
    medians: dict[str, float | None] = {}
    ranges: dict[str, tuple[float, float]] = {}
    for name in FIGURE_FIELDS:
        values = [f[name] for f in per_run]
        present = [v for v in values if v is not None]
        if len(present) < len(values):
            medians[name] = None
            continue
        medians[name] = statistics.median(present)
        if len(present) > 1:
            ranges[name] = (min(present), max(present))
    last = runs[-1]
    names = list(last.energy_by_device_j)
    devices = tuple(
        DeviceFigure(
            name,
            str(last.kinds[name]),
            str(last.sources[name]),
            statistics.median(r.energy_by_device_j.get(name, 0.0) for r in runs),
        )
        for name in names
    )
    reasons: list[str] = []
    for r in runs:
        reasons += [reason for reason in r.partial_reasons if reason not in reasons]
    duration = medians["duration_s"]
    location = last.accounting.get("location")
    bounds = [sum(r.uncertainty_by_device_j.values()) for r in runs if r.uncertainty_by_device_j]
    return Figures(
        energy_j=medians["energy_j"],
        gpu_energy_j=medians["gpu_energy_j"],
        cpu_energy_j=medians["cpu_energy_j"],
        dram_energy_j=medians["dram_energy_j"],
        co2_kg=medians["co2_kg"],
        cost_usd=medians["cost_usd"],
        duration_s=0.0 if duration is None else duration,
        mean_power_w=medians["mean_power_w"],
        devices=devices,
        runs=len(runs),
        ranges=ranges,
        partial=any(r.partial for r in runs),
        partial_reasons=tuple(reasons),
        intensity_g_per_kwh=last.intensity_g_per_kwh,
        location=None if location is None else str(location),
        clock="virtual" if virtual_clock else "real",
        uncertainty_j=statistics.median(bounds) if bounds else None,
    )


def _run_figures(result: Result) -> dict[str, float | None]:
    kinds = set(result.kinds.values())
    metered = bool(result.energy_by_device_j)
    mean_w = result.mean_power_w if metered and result.duration_s > 0 else None
    return {
        "energy_j": result.energy_j if metered else None,
        "gpu_energy_j": result.gpu_energy_j if "gpu" in kinds else None,
        "cpu_energy_j": result.cpu_energy_j if "cpu" in kinds else None,
        "dram_energy_j": result.dram_energy_j if "dram" in kinds else None,
        "co2_kg": result.co2_kg,
        "cost_usd": result.cost_usd,
        "duration_s": result.duration_s,
        "mean_power_w": mean_w,
    }


class TestMeter:
    """Meters one test's call (all its runs) and decides its budget verdict.

    Attributes:
        nodeid: The test.
        options: The session's settings.
        budget: The marker's limits (empty for a test metered without one).
        notes: greenai's warnings during the test, as text.
        error: Why the test could not be metered ("" when it was).
        status: The test's line in the summary: ``ok``, ``EXCEEDED``, ``unmeasured``,
            ``skipped``, ``UNMEASURED``, ``failed`` or ``-`` (no budget).
        message: The budget message behind the status ("" when none).
    """

    __test__ = False  # not a test class, whatever its name

    def __init__(self, nodeid: str, options: Options, budget: Mapping[str, float]) -> None:
        self.nodeid = nodeid
        self.options = options
        self.budget = dict(budget)
        self.notes: list[str] = []
        self.error = ""
        self.status = "-"
        self.message = ""
        self.checks: list[Check] = []
        self.block_checks: list[dict[str, Any]] = []
        self._tracker: Tracker | None = None
        self._ended: Tracker | None = None  # ended, figures not worked out yet
        self._runs: list[Window] = []
        self._virtual = False
        self.result: Result | None = None
        self.figures: Figures | None = None

    @property
    def tracker(self) -> Tracker | None:
        """The running tracker (None before start, after stop, or if it failed to start)."""
        return self._tracker

    def start(self) -> None:
        """Start the tracker; a failure leaves the test unmetered, never failed."""
        try:
            with collect_warnings(self.notes):
                tracker = tracker_for(self.nodeid, self.options)
                self._virtual = _clock.active().virtual
                if self.budget or self.options.separate:  # not sharing earlier tests' updates
                    finisher.drain()
                tracker.start()
        except Exception as e:  # metering must not fail the test: its budget is unmeasured
            self.error = f"metering could not start: {type(e).__name__}: {e}"
            return
        self._tracker = tracker

    @contextmanager
    def run(self, index: int) -> Iterator[None]:
        """One run of the call; with repeats, a window ``run <index + 1>`` of the tracker."""
        tracker = self._tracker
        window = None
        if tracker is not None and self.options.repeat > 1:
            try:
                with collect_warnings(self.notes):
                    window = tracker.window(f"run {index + 1}")
                    window.__enter__()
            except Exception as e:  # metering must not fail the test
                self.error = f"metering failed: {type(e).__name__}: {e}"
                window = None
        try:
            yield
        finally:
            if window is not None:
                try:
                    with collect_warnings(self.notes):
                        window.__exit__(None, None, None)
                    self._runs.append(window)
                except Exception as e:  # nor hide the test's own error
                    self.error = f"metering failed: {type(e).__name__}: {e}"

    def stop(self) -> None:
        """End the tracker. A test with a budget gets its figures now (its verdict needs
        them); any other when the session asks (:meth:`resolve`), so that the end of the
        test never waits for the GPU counters' next updates."""
        tracker, self._tracker = self._tracker, None
        if tracker is None:
            return
        try:
            with collect_warnings(self.notes):
                tracker.end(write_outputs=False)
        except Exception as e:  # a bug or sensor failure here must not fail the test
            self.error = f"metering failed: {type(e).__name__}: {e}"
            return
        self._ended = tracker
        if self.budget:
            self.resolve()

    @property
    def pending(self) -> bool:
        """The test's run has ended, and its figures are not worked out yet."""
        return self._ended is not None

    def resolve(self) -> None:
        """Work out the figures (medians over the finished runs), once the run has ended."""
        tracker, self._ended = self._ended, None
        if tracker is None:
            return
        try:
            with collect_warnings(self.notes):
                self.result = tracker.result
                runs = [w.result for w in self._runs] if self._runs else [self.result]
                self.figures = figures_of(runs, virtual_clock=self._virtual)
        except Exception as e:  # a bug or sensor failure here must not fail the test
            self.error = f"metering failed: {type(e).__name__}: {e}"
            self.result = None
            self.figures = None

    def verdict(self, policy: str) -> tuple[str, str]:
        """Check the marker's budget and decide what happens to the test.

        Returns:
            ``(action, message)``: action ``"pass"``, ``"fail"`` or ``"skip"``.
        """
        if not self.budget:
            return "pass", ""
        self.checks = _budget.evaluate(self.budget, self.figures, self.error)
        states = {c.state for c in self.checks}
        if _budget.EXCEEDED in states:
            self.status = "EXCEEDED"
            self.message = _budget.exceeded_message(self.checks)
            return "fail", self.message
        if _budget.UNMEASURED in states:
            self.message = _budget.unmeasured_message(self.checks)
            self.status = {"skip": "skipped", "fail": "UNMEASURED", "pass": "unmeasured"}[policy]
            return policy, self.message
        if self.status == "-":  # an energy.budget() block may have said more already
            self.status = "ok"
        self.message = "; ".join(c.text for c in self.checks)
        return "pass", ""

    def to_dict(self, *, outcome: str, worker: str | None) -> dict[str, Any]:
        """Everything the controller needs about this test, as JSON-ready data.

        The tracker's whole result (timeline, windows) is only used by ``--energy-save``:
        without it, it is neither built nor sent from an xdist worker for every test.
        """
        from greenai.report.records import record_dict

        result = None
        if self.result is not None and self.options.save is not None:
            result = record_dict(self.result)
            for key in ("format", "format_version"):
                result.pop(key, None)
        return {
            "v": 1,
            "nodeid": self.nodeid,
            "worker": worker,
            "outcome": outcome,
            "status": self.status,
            "message": self.message,
            "budget": dict(self.budget),
            "checks": [
                {
                    "name": c.name,
                    "state": c.state,
                    "limit": c.limit,
                    "spent": c.spent,
                    "text": c.text,
                }
                for c in self.checks
            ],
            "blocks": list(self.block_checks),
            "repeat": self.options.repeat,
            "figures": None if self.figures is None else self.figures.to_dict(),
            "error": self.error,
            "notes": list(self.notes),
            "result": result,
            "pending": self.pending,
        }


class Measurement:
    """A metered block of a test (``with energy.measure("step") as m:``).

    Attributes:
        name: The block's name (a window of the test's run in the saved record).
        notes: greenai's warnings while metering it.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.notes: list[str] = []
        self._result: Result | None = None
        self._why_not = "the block has not ended yet"

    @property
    def result(self) -> Result:
        """What the block spent (energy by device, duration, CO2e...), once it has ended.

        Raises:
            RuntimeError: The block has not ended, or it could not be metered (the
                message says why).
        """
        if self._result is None:
            raise RuntimeError(f"energy.measure({self.name!r}): {self._why_not}")
        return self._result


class EnergyFixture:
    """The ``energy`` fixture: meter blocks of a test, and give them budgets.

    Inside a metered test's call (using the fixture meters the test) each block is
    a window of the test's tracker, nested in the current run; elsewhere (another
    fixture's setup) it gets a tracker of its own.
    """

    def __init__(
        self,
        nodeid: str,
        options: Options,
        current_meter: Callable[[], TestMeter | None],
    ) -> None:
        self._nodeid = nodeid
        self._options = options
        self._current_meter = current_meter

    @contextmanager
    def measure(self, name: str = "block") -> Iterator[Measurement]:
        """Meter the ``with`` block; its figures are on ``m.result`` after it.

        Args:
            name: The block's name, in the saved record and in messages.
        """
        if not isinstance(name, str) or not name:
            raise TypeError(f"energy.measure() takes a non-empty name, got {name!r}")
        measurement = Measurement(name)
        meter = self._current_meter()
        tracker = None if meter is None else meter.tracker
        if tracker is not None:
            with collect_warnings(measurement.notes):
                window = tracker.window(name)
                window.__enter__()
            try:
                yield measurement
            finally:
                try:
                    with collect_warnings(measurement.notes):
                        window.__exit__(None, None, None)
                        measurement._result = window.result
                except Exception as e:  # metering must not fail the test (nor hide its error)
                    measurement._why_not = f"could not be metered: {type(e).__name__}: {e}"
            self._add_notes(meter, measurement)
            return
        own: Tracker | None = None
        try:
            with collect_warnings(measurement.notes):
                own = tracker_for(f"{self._nodeid} {name}", self._options)
                own.start()
        except Exception as e:  # metering must not fail the test
            own = None
            measurement._why_not = f"could not be metered: {type(e).__name__}: {e}"
        try:
            yield measurement
        finally:
            if own is not None:
                try:
                    with collect_warnings(measurement.notes):
                        measurement._result = own.stop(write_outputs=False)
                except Exception as e:  # metering must not fail the test
                    measurement._why_not = f"could not be metered: {type(e).__name__}: {e}"
        self._add_notes(meter, measurement)

    @contextmanager
    def budget(
        self,
        *,
        joules: float | None = None,
        gpu_joules: float | None = None,
        co2_g: float | None = None,
        usd: float | None = None,
        watts: float | None = None,
        seconds: float | None = None,
        name: str = "budget",
    ) -> Iterator[Measurement]:
        """Meter the ``with`` block and fail the test if it spends more than the limits.

        The limits are those of ``@pytest.mark.energy_budget`` (J, J, g CO2e, USD, W, s);
        a limit that cannot be measured follows ``--energy-unmeasured``. A block
        that raises is not checked: its exception goes on.

        Raises:
            ValueError: A limit is not a finite number >= 0, or none is given.
        """
        given = {
            key: value
            for key, value in (
                ("joules", joules),
                ("gpu_joules", gpu_joules),
                ("co2_g", co2_g),
                ("usd", usd),
                ("watts", watts),
                ("seconds", seconds),
            )
            if value is not None
        }
        limits = _budget.parse_budget((), given, "energy.budget()")
        if not limits:
            raise ValueError(
                "energy.budget() needs at least one limit: "
                "joules, gpu_joules, co2_g, usd, watts or seconds"
            )
        with self.measure(name) as measurement:
            yield measurement
        figures = None
        if measurement._result is not None:
            figures = figures_of([measurement._result], virtual_clock=_clock.active().virtual)
        checks = _budget.evaluate(limits, figures, measurement._why_not)
        states = {c.state for c in checks}
        meter = self._current_meter()
        policy = self._options.unmeasured
        if _budget.EXCEEDED in states:
            action, status = "fail", "EXCEEDED"
            message = f"block {name!r}: " + _budget.exceeded_message(checks)
        elif _budget.UNMEASURED in states:
            action = policy
            status = {"skip": "skipped", "fail": "UNMEASURED", "pass": "unmeasured"}[policy]
            message = f"block {name!r}: " + _budget.unmeasured_message(checks)
        else:
            action, status, message = "pass", "ok", ""
        if meter is not None:
            meter.block_checks.append({"name": name, "status": status, "message": message})
            if status != "ok" and meter.status in ("-", "ok", "unmeasured"):
                meter.status, meter.message = status, message
        if action == "fail":
            pytest.fail(message, pytrace=False)
        if action == "skip":
            pytest.skip(message)

    @staticmethod
    def _add_notes(meter: TestMeter | None, measurement: Measurement) -> None:
        if meter is None:
            return
        for note in measurement.notes:
            if note not in meter.notes:
                meter.notes.append(note)
