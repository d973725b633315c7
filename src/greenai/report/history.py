"""A local SQLite database of every tracked run, to list, fetch and compare past runs.

The database keeps one row per run (keyed by ``run_id``) with the figures a listing
needs (energy by device kind, CO2, cost, duration, host) and the run's summary as a JSON
record (:func:`run_summary`: every figure, window, step count and quantile, accounting
and metadata, but no power timeline nor sampled steps), so an entry stays small however
long the run. :meth:`History.get` returns that summary; :meth:`History.get_full` the
run's own JSON record when it was written and still exists (charts need its timeline).

Where it lives: ``$GREENAI_HISTORY`` when set, else
``$XDG_DATA_HOME/greenai/history.sqlite3`` (``~/.local/share`` when
``XDG_DATA_HOME`` is unset, empty or relative, as the XDG spec says).

Several processes may add runs at once: the database is in WAL mode and every
connection waits up to :data:`BUSY_TIMEOUT_S` for a lock instead of failing. WAL
needs shared memory between processes, so the file must be on a local disk, not
on NFS. A connection is opened per call, so a :class:`History` can be shared by
threads and survives ``fork``.

The schema is versioned with ``PRAGMA user_version``; a database written by a
newer greenai (a higher version) is refused, never modified.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from greenai.core.errors import ReportError
from greenai.report.comparison import Comparison, Delta, compare_results
from greenai.report.records import read_record, record_dict, record_json, result_from_record
from greenai.tracking.result import PowerTimeline, Result

SCHEMA_VERSION = 1
"""The ``PRAGMA user_version`` this greenai writes; a higher one is refused."""

BUSY_TIMEOUT_S = 30.0
"""How long a connection waits for another process's lock before failing. Units: s."""

_CANDIDATES_SHOWN = 10

_SCHEMA = """
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY,
    name TEXT,
    start_unix_s REAL NOT NULL,
    duration_s REAL NOT NULL,
    energy_j REAL NOT NULL,
    gpu_energy_j REAL NOT NULL,
    cpu_energy_j REAL NOT NULL,
    dram_energy_j REAL NOT NULL,
    co2_kg REAL,
    cost_usd REAL,
    partial INTEGER NOT NULL,
    hostname TEXT,
    record TEXT NOT NULL
);
CREATE INDEX runs_newest_first ON runs (start_unix_s DESC);
"""

_SUMMARY_COLUMNS = (
    "run_id, name, start_unix_s, duration_s, energy_j, gpu_energy_j, cpu_energy_j, "
    "dram_energy_j, co2_kg, cost_usd, partial, hostname"
)

_NEWEST_FIRST = "ORDER BY start_unix_s DESC, rowid DESC"


@dataclass(frozen=True)
class RunSummary:
    """One run as listed by :meth:`History.runs`. Units: s, J, kg CO2e, USD.

    Attributes:
        index: 1-based position in the newest-first list (``1`` = latest); a ref for
            :meth:`History.get`.
        run_id: The run's unique id.
        name: The run's name.
        start_unix_s: Wall-clock start, seconds since the epoch.
        duration_s: Length of the run.
        energy_j: Total energy over all devices.
        gpu_energy_j: Energy of the GPUs.
        cpu_energy_j: Energy of the CPU packages.
        dram_energy_j: Energy of the memory.
        co2_kg: Emissions, or None when the run was not accounted.
        cost_usd: Money spent, or None when the run was not accounted.
        partial: True when a sensor failed for part of the run (figures undercount).
        hostname: The machine it ran on, when recorded.
    """

    index: int
    run_id: str
    name: str | None
    start_unix_s: float
    duration_s: float
    energy_j: float
    gpu_energy_j: float
    cpu_energy_j: float
    dram_energy_j: float
    co2_kg: float | None
    cost_usd: float | None
    partial: bool
    hostname: str | None


def default_history_path() -> Path:
    """``$GREENAI_HISTORY``, else ``$XDG_DATA_HOME/greenai/history.sqlite3``.

    ``XDG_DATA_HOME`` falls back to ``~/.local/share`` when unset, empty or not an
    absolute path (the XDG Base Directory rules).
    """
    explicit = os.environ.get("GREENAI_HISTORY")
    if explicit:
        return Path(explicit).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME", "")
    base = Path(data_home) if os.path.isabs(data_home) else Path.home() / ".local" / "share"
    return base / "greenai" / "history.sqlite3"


class History:
    """Every tracked run on this machine (or wherever ``path`` points).

    Args:
        path: The SQLite file; :func:`default_history_path` when None. It and its
            folder are created on first use.

    Raises (from any method):
        ReportError: The file is not a greenai history database, or one written by
            a newer greenai (schema version above :data:`SCHEMA_VERSION`).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_history_path()
        self._ready = False

    def __repr__(self) -> str:
        return f"History({str(self.path)!r})"

    def add(self, result: Result, *, record: str | os.PathLike[str] | None = None) -> None:
        """Store ``result``'s summary; adding a run again replaces its row (one per ``run_id``).

        Args:
            result: The run.
            record: Where its full JSON record was written, if it was, for :meth:`get_full`.

        Raises:
            ValueError: The result has no ``run_id``, or its start, duration or energy is
            not a finite number.
        """
        if not result.run_id:
            raise ValueError("cannot add a result without a run_id to the history")
        totals = {
            "start_unix_s": result.start_unix_s,
            "duration_s": result.duration_s,
            "energy_j": result.energy_j,
        }
        broken = [name for name, value in totals.items() if not math.isfinite(value)]
        if broken:
            raise ValueError(f"cannot add run {result.run_id}: {', '.join(broken)} not finite")
        hostname = result.metadata.get("hostname")
        row = (
            result.run_id,
            result.name,
            float(result.start_unix_s),
            float(result.duration_s),
            float(result.energy_j),
            float(result.gpu_energy_j),
            float(result.cpu_energy_j),
            float(result.dram_energy_j),
            result.co2_kg,
            result.cost_usd,
            int(result.partial),
            None if hostname is None else str(hostname),
            _summary_json(result, record),
        )
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(
                    "INSERT OR REPLACE INTO runs (run_id, name, start_unix_s, duration_s, "
                    "energy_j, gpu_energy_j, cpu_energy_j, dram_energy_j, co2_kg, cost_usd, "
                    "partial, hostname, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def runs(self, limit: int | None = None) -> list[RunSummary]:
        """The runs, newest (latest start) first.

        Args:
            limit: At most this many (the newest); all when None.

        Raises:
            ValueError: ``limit`` is negative.
        """
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0 or None, got {limit}")
        with self._connect() as db:
            rows = db.execute(
                f"SELECT {_SUMMARY_COLUMNS} FROM runs {_NEWEST_FIRST} LIMIT ?",
                (-1 if limit is None else limit,),
            ).fetchall()
        return [_summary(i, row) for i, row in enumerate(rows, start=1)]

    def __len__(self) -> int:
        with self._connect() as db:
            count: int = db.execute("SELECT count(*) FROM runs").fetchone()[0]
        return count

    def __contains__(self, run_id: object) -> bool:
        """Whether a run with exactly this ``run_id`` is stored (no prefix or index)."""
        with self._connect() as db:
            row = db.execute("SELECT 1 FROM runs WHERE run_id = ?", (str(run_id),)).fetchone()
        return row is not None

    def get(self, ref: str | int) -> Result:
        """The full result of one run.

        ``ref`` is tried, in this order, as: an exact ``run_id``; a 1-based index into
        the newest-first list (``1`` or ``"1"`` = latest), when it is all digits and
        in range; a prefix of exactly one ``run_id``.

        Raises:
            KeyError: No run, or more than one, matches; the message lists candidates.
            ValueError: ``ref`` is empty, or the stored record is unreadable.
        """
        text = str(ref).strip()
        if not text:
            raise ValueError("empty run reference: give a run_id, a prefix of one, or an index")
        with self._connect() as db:
            record = self._find(db, text)
        return result_from_record(json.loads(record), source=f"{self.path} run {text}")

    def get_full(self, ref: str | int) -> Result:
        """The run's full JSON record (timeline, sampled steps) when it was recorded with
        :meth:`add`'s ``record`` and the file still reads as that run; else :meth:`get`'s summary.

        Raises:
            As :meth:`get`.
        """

        text = str(ref).strip()
        summary = self.get(text)
        with self._connect() as db:
            data = json.loads(self._find(db, text))
        path = data.get("record_file")
        if isinstance(path, str) and os.path.isfile(path):
            try:
                full = read_record(path)
            except (OSError, ValueError):
                return summary
            if full.run_id == summary.run_id:
                return full
        return summary

    def compare(self, a: str | int | Result, b: str | int | Result) -> Comparison:
        """Compare run ``b`` with run ``a`` (refs as for :meth:`get`, or results)."""
        result_a = a if isinstance(a, Result) else self.get(a)
        result_b = b if isinstance(b, Result) else self.get(b)
        return compare_results(result_a, result_b)

    def _find(self, db: sqlite3.Connection, ref: str) -> str:
        row = db.execute("SELECT record FROM runs WHERE run_id = ?", (ref,)).fetchone()
        if row is not None:
            return str(row[0])
        if ref.isdecimal() and int(ref) >= 1:
            row = db.execute(
                f"SELECT record FROM runs {_NEWEST_FIRST} LIMIT 1 OFFSET ?", (int(ref) - 1,)
            ).fetchone()
            if row is not None:
                return str(row[0])
        matches = db.execute(
            f"SELECT run_id, name, start_unix_s FROM runs WHERE substr(run_id, 1, ?) = ? "
            f"{_NEWEST_FIRST} LIMIT ?",
            (len(ref), ref, _CANDIDATES_SHOWN + 1),
        ).fetchall()
        if len(matches) == 1:
            found = db.execute(
                "SELECT record FROM runs WHERE run_id = ?", (matches[0][0],)
            ).fetchone()
            return str(found[0])
        if matches:
            raise KeyError(
                f"run reference {ref!r} is ambiguous in {self.path}: it starts "
                f"{'more than ' if len(matches) > _CANDIDATES_SHOWN else ''}"
                f"{min(len(matches), _CANDIDATES_SHOWN)} run ids: "
                + "; ".join(_describe(m) for m in matches[:_CANDIDATES_SHOWN])
                + ". Give more characters."
            )
        latest = db.execute(
            f"SELECT run_id, name, start_unix_s FROM runs {_NEWEST_FIRST} LIMIT ?",
            (_CANDIDATES_SHOWN,),
        ).fetchall()
        count = db.execute("SELECT count(*) FROM runs").fetchone()[0]
        listing = (
            "latest runs: "
            + "; ".join(f"{i}: {_describe(m)}" for i, m in enumerate(latest, start=1))
            if latest
            else "the history is empty"
        )
        raise KeyError(
            f"no run matches {ref!r} in {self.path} ({count} runs; an index must be 1 to "
            f"{count}); {listing}"
        )

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A fresh autocommit connection with the busy timeout, on an up-to-date schema."""
        if not self._ready:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as e:
            raise ReportError(f"cannot open the run history {self.path}: {e}") from e
        try:
            if not self._ready:
                self._prepare(db)
                self._ready = True
            yield db
        except sqlite3.DatabaseError as e:
            if type(e) is not sqlite3.DatabaseError:  # locked, integrity...: not about the file
                raise
            raise ReportError(f"{self.path} is not a usable greenai run history: {e}") from e
        finally:
            db.close()

    def _prepare(self, db: sqlite3.Connection) -> None:
        """Switch to WAL and create or check the schema, once per :class:`History`."""
        version = _user_version(db)
        if version > SCHEMA_VERSION:
            raise _newer(self.path, version)
        _switch_to_wal(db)
        if version == SCHEMA_VERSION:
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            version = _user_version(db)  # another process may have got here first
            if version > SCHEMA_VERSION:
                raise _newer(self.path, version)
            if version == 0:
                tables = db.execute("SELECT name FROM sqlite_master").fetchall()
                if tables:
                    raise ReportError(
                        f"{self.path} is a SQLite database but not a greenai run history "
                        f"(it holds {len(tables)} tables or indexes); refusing to change it"
                    )
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")


def run_summary(result: Result) -> Result:
    """``result`` without its power timeline and sampled steps, in its windows and ranks too:
    the figures, windows, step counts, totals and quantiles, accounting and metadata."""
    return replace(
        result,
        timeline=PowerTimeline((), {}),
        steps=None if result.steps is None else result.steps.without_sample(),
        windows=tuple(run_summary(w) for w in result.windows),
        ranks=tuple(run_summary(r) for r in result.ranks),
    )


def _summary_json(result: Result, record: str | os.PathLike[str] | None) -> str:
    """The summary's record, with the full record's absolute path when there is one."""
    if record is None:
        return record_json(run_summary(result))
    data = record_dict(run_summary(result))
    data["record_file"] = os.path.abspath(record)
    return json.dumps(data, allow_nan=False, ensure_ascii=False)


def _switch_to_wal(db: sqlite3.Connection) -> None:
    """Put the database in WAL mode, retrying while other processes hold it.

    Changing the journal mode needs the database to itself, and SQLite answers
    "database is locked" at once instead of waiting on the busy timeout when
    several processes open a new history together.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    delay_s = 0.005
    while True:
        try:
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(delay_s)
            delay_s = min(delay_s * 2, 0.2)


def _user_version(db: sqlite3.Connection) -> int:
    version: int = db.execute("PRAGMA user_version").fetchone()[0]
    return version


def _newer(path: Path, version: int) -> ReportError:
    return ReportError(
        f"{path} is a run history of schema version {version}, written by a newer greenai; "
        f"this greenai reads version {SCHEMA_VERSION}. Upgrade greenai, or set "
        "GREENAI_HISTORY to another file."
    )


def _summary(index: int, row: tuple[Any, ...]) -> RunSummary:
    return RunSummary(
        index=index,
        run_id=row[0],
        name=row[1],
        start_unix_s=row[2],
        duration_s=row[3],
        energy_j=row[4],
        gpu_energy_j=row[5],
        cpu_energy_j=row[6],
        dram_energy_j=row[7],
        co2_kg=row[8],
        cost_usd=row[9],
        partial=bool(row[10]),
        hostname=row[11],
    )


def _describe(row: tuple[Any, ...]) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row[2]))
    return f"{row[0]} ({row[1] or 'run'}, started {started})"


__all__ = [
    "BUSY_TIMEOUT_S",
    "SCHEMA_VERSION",
    "Comparison",
    "Delta",
    "History",
    "RunSummary",
    "compare_results",
    "default_history_path",
    "run_summary",
]
