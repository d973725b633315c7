"""What a pytest session metered: tests merged from every pytest-xdist worker, notes,
the comparison with a saved run, the saved record and the session's verdict.

Each test's data travels on its call-phase report (a ``greenai_energy``
attribute, which pytest serializes with the report), so under pytest-xdist the
controller receives every test through ``pytest_runtest_logreport`` exactly as
a single process does. A worker also sends, when it finishes, the node ids it
metered and its notes (``workeroutput["greenai_energy"]``); the controller checks
the two against each other and says so in the summary when a worker's data did
not all arrive (it crashed, or its data could not be read).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from greenai.pytest_energy.budget import Figures
from greenai.pytest_energy.compare import Comparison, compare
from greenai.pytest_energy.options import Options
from greenai.pytest_energy.table import Row, render


@dataclass
class TestEntry:
    """One metered test, as received from its report.

    Attributes:
        nodeid: The test.
        worker: The pytest-xdist worker that ran it (None without xdist).
        outcome: ``passed``, ``failed`` or ``skipped`` as the call ended.
        status: Its status in the table.
        figures: What it spent (None when it could not be metered).
        data: Everything received, for the saved record.
    """

    __test__ = False

    nodeid: str
    worker: str | None
    outcome: str
    status: str
    budget: dict[str, float]
    figures: Figures | None
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any) -> TestEntry:
        """Read a test's data (see :meth:`TestMeter.to_dict`).

        Raises:
            ValueError: It is not such data, or from an incompatible greenai.
        """
        if not isinstance(data, Mapping) or data.get("v") != 1:
            version = data.get("v") if isinstance(data, Mapping) else type(data).__name__
            raise ValueError(f"unknown energy data (version {version!r})")
        try:
            figures = data.get("figures")
            return cls(
                nodeid=str(data["nodeid"]),
                worker=None if data.get("worker") is None else str(data["worker"]),
                outcome=str(data["outcome"]),
                status=str(data["status"]),
                budget={str(k): float(v) for k, v in dict(data.get("budget") or {}).items()},
                figures=None if figures is None else Figures.from_dict(figures),
                data=dict(data),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"broken energy data: {e!r}") from e


UNCERTAIN_SHARE = 0.1
"""A test whose stated uncertainty exceeds this share of its energy is noted in the summary."""


class EnergySession:
    """Gathers the session's metered tests and reports on them.

    Args:
        options: The session's settings.
        name: The session's name in the saved record.
        invocation_dir: Where pytest was started; relative paths count from there.
        worker_id: This process's pytest-xdist worker id (None on the controller or
            without xdist).
    """

    def __init__(
        self,
        options: Options,
        *,
        name: str,
        invocation_dir: Path,
        worker_id: str | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        self.options = options
        self.name = name
        self.invocation_dir = invocation_dir
        self.worker_id = worker_id
        self.args = args
        self.tests: dict[str, TestEntry] = {}
        self.notes: list[str] = []
        self.baseline: dict[str, Figures] | None = None
        self.comparison: Comparison | None = None
        self.saved_path: Path | None = None
        self.save_error = ""
        self.workers_seen: set[str] = set()
        self.errors: dict[str, list[str]] = {}
        self.unmergeable = 0
        self.late: list[dict[str, Any]] = []  # tests' data sent again, with their figures

    def path(self, text: str) -> Path:
        """``text`` as a path from the invocation directory."""
        return self.invocation_dir / os.path.expanduser(text)

    def load_baseline(self) -> None:
        """Read ``--energy-compare``'s file.

        Raises:
            ValueError: Not a record written by ``--energy-save`` (message says why).
            OSError: It cannot be read.
        """
        from greenai.pytest_energy.saved import load_baseline

        if self.options.compare is not None:
            self.baseline = load_baseline(self.path(self.options.compare))

    def note(self, text: str) -> None:
        """Add a line to the summary's notes (once)."""
        if text not in self.notes:
            self.notes.append(text)

    def add(self, data: Any, *, nodeid: str) -> None:
        """Take one test's data from its report; data that cannot be read becomes a note."""
        try:
            entry = TestEntry.from_dict(data)
        except ValueError as e:
            self.unmergeable += 1
            self.note(f"could not merge the energy data of {nodeid}: {e}")
            return
        for nodeids in self.errors.values():  # data sent again replaces the first
            if entry.nodeid in nodeids:
                nodeids.remove(entry.nodeid)
        self.tests[entry.nodeid] = entry
        if entry.worker is not None:
            self.workers_seen.add(entry.worker)
        for text in entry.data.get("notes") or ():
            self.note(str(text))
        error = entry.data.get("error")
        if error:
            self.errors.setdefault(str(error), []).append(entry.nodeid)

    def add_late(self, data: dict[str, Any]) -> None:
        """Take a test's data again, with the figures worked out at the end of the session
        (a pytest-xdist worker sends it to the controller when it finishes)."""
        self.add(data, nodeid=str(data.get("nodeid")))
        self.late.append(data)

    def worker_output(self) -> dict[str, Any]:
        """What a worker sends the controller when it finishes (JSON-ready)."""
        return {
            "v": 1,
            "metered": list(self.tests),
            "notes": list(self.notes),
            "late": list(self.late),
        }

    def worker_finished(self, worker_id: str, output: Any, error: object | None) -> None:
        """A pytest-xdist worker is down: check that all its tests' data arrived."""
        if error is not None:
            self.note(
                f"pytest-xdist worker {worker_id} went down ({error}); the energy figures of "
                "the test it was running are lost"
            )
        if output is None:
            return
        if not isinstance(output, Mapping) or output.get("v") != 1:
            self.note(f"could not merge worker {worker_id}'s energy notes: unknown format")
            return
        for data in output.get("late") or ():
            self.add(data, nodeid=str(data.get("nodeid") if isinstance(data, Mapping) else "?"))
        for text in output.get("notes") or ():
            self.note(str(text))
        missing = [n for n in output.get("metered") or () if n not in self.tests]
        if missing:
            self.note(
                f"worker {worker_id} metered {len(missing)} test(s) whose figures did not "
                f"reach the summary: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
            )

    def finish(self) -> bool:
        """Compare and save, once every test is in. Returns True when the session must fail.

        It fails on a regression beyond an ``--energy-compare-fail`` threshold, and
        when ``--energy-save`` could not write its file.
        """
        for error, nodeids in self.errors.items():
            first = nodeids[0] + (f" and {len(nodeids) - 1} more" if len(nodeids) > 1 else "")
            self.note(f"{len(nodeids)} test(s) could not be metered ({first}): {error}")
        if len(self.workers_seen) > 1:
            self.note(
                f"{len(self.workers_seen)} pytest-xdist workers metered tests at the same time: "
                "a device they share (a GPU, the CPU package) is charged in full to every test "
                "running on it, so overlapping tests can count the same joules more than once"
            )
        shared = [
            n
            for n, t in self.tests.items()
            if t.figures is not None
            and t.figures.uncertainty_j is not None
            and t.figures.energy_j
            and t.figures.uncertainty_j > UNCERTAIN_SHARE * t.figures.energy_j
        ]
        if shared:
            self.note(
                f"{len(shared)} test(s) ran for less than a GPU energy counter's update "
                f"period: their GPU figures are uncertain by more than {UNCERTAIN_SHARE:.0%} "
                "(the saved record has each test's bound); back to back without a "
                "budget, tests share the counter's updates (the total over them is exact); "
                "a test with a budget, or every test under --energy-separate, waits to be "
                "measured on its own"
            )
        if self.baseline is not None:
            current = {n: t.figures for n, t in self.tests.items()}
            self.comparison = compare(current, self.baseline, self.options.compare_fail)
            if self.comparison.not_metered:
                hint = "" if self.options.all_tests else " (add --energy to meter every test)"
                self.note(
                    f"{len(self.comparison.not_metered)} test(s) of the saved run were not "
                    f"metered in this one{hint}"
                )
        if self.options.save is not None:
            self._save()
        return bool(self.save_error) or bool(self.comparison and self.comparison.regressions)

    def _save(self) -> None:
        from greenai.pytest_energy.saved import save, session_result
        from greenai.tracking.result import Result

        tests = []
        for entry in self.tests.values():
            data = entry.data.get("result")
            if not isinstance(data, Mapping):
                continue
            meta = {k: v for k, v in entry.data.items() if k not in ("result", "v")}
            try:
                tests.append((Result.from_dict(data), meta))
            except ValueError as e:
                self.note(f"{entry.nodeid} is missing from the saved file: {e}")
        session = {
            "options": {
                "devices": self.options.devices_text,
                "repeat": self.options.repeat,
                "unmeasured": self.options.unmeasured,
                "all_tests": self.options.all_tests,
            },
            "args": list(self.args),
            "workers": sorted(self.workers_seen),
            "notes": list(self.notes),
        }
        path = self.path(self.options.save or "")
        try:
            self.saved_path = save(path, session_result(tests, name=self.name, session=session))
        except (OSError, ValueError) as e:
            self.save_error = f"could not save the energy figures to {path}: {e}"

    def summary(self, width: int) -> list[tuple[str, str]]:
        """The summary's lines, each with its colour (``""``, red, yellow or green)."""
        out: list[tuple[str, str]] = []
        rows = [
            Row(t.nodeid, t.figures, t.budget, t.status, len(t.data.get("blocks") or ()))
            for t in self.tests.values()
        ]
        if rows:
            out += [
                (text, "")
                for text in render(
                    rows, width=width, baseline=self.baseline, repeat=self.options.repeat
                )
            ]
        else:
            out.append(("no test was metered", ""))
        out += [(f"note: {text}", "yellow") for text in self.notes]
        if self.comparison is not None:
            for regression in self.comparison.regressions:
                out.append((f"REGRESSION {regression.describe()}", "red"))
            if self.options.compare_fail and not self.comparison.regressions:
                rules = ", ".join(r.text for r in self.options.compare_fail)
                out.append(
                    (f"no regression beyond {rules} against {self.options.compare}", "green")
                )
        if self.saved_path is not None:
            out.append(
                (
                    f"saved {len(self.tests)} test(s) to {self.saved_path} "
                    "(greenai report renders it)",
                    "",
                )
            )
        if self.save_error:
            out.append((self.save_error, "red"))
        return out

    @property
    def failure_reason(self) -> str:
        """Why :meth:`finish` failed the session, in one line ("" when it did not)."""
        if self.save_error:
            return self.save_error
        if self.comparison and self.comparison.regressions:
            n = len(self.comparison.regressions)
            return f"{n} energy regression(s) against {self.options.compare}"
        return ""
