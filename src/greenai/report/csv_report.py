"""One row per run in ``emissions.csv``, in CodeCarbon's own columns, order and units.

The file is the one CodeCarbon's ``OfflineEmissionsTracker(save_to_file=True)``
writes, so CodeCarbon's dashboard (``carbonboard``), its ``pandas`` recipes and any
script written for it read greenai's runs too, and both tools may share one file.

How each column is filled (Units as CodeCarbon's):

- ``timestamp``: the run's END, local time, ``%Y-%m-%dT%H:%M:%S`` (no zone, no
  fraction): CodeCarbon stamps the row with ``datetime.now()`` when the run stops,
  in that format, and its dashboard sorts the column as text.
- ``duration`` s; ``emissions`` kg CO2e; ``emissions_rate`` kg/s.
- ``cpu_power``, ``gpu_power``, ``ram_power``: mean power over the run, W
  (energy / duration). ``*_energy`` and ``energy_consumed`` (all devices): kWh.
  CodeCarbon multiplies every power and energy by the PUE before writing it, so
  these are multiplied by ``accounting["pue"]`` (1 when absent), and
  ``emissions = energy_consumed * intensity`` holds as in CodeCarbon's rows.
  greenai's ``dram`` devices are CodeCarbon's ``ram``.
- ``emissions`` and ``emissions_rate`` are EMPTY when the run has no ``co2_kg``
  (not accounted): a 0 would claim a clean run. pandas reads them as NaN.
- ``water_consumed`` 0.0 and ``wue`` 0.0: greenai does not estimate water.
- ``country_name``, ``country_iso_code``, ``region``, ``cloud_provider``,
  ``cloud_region``: from ``result.accounting`` when present, else empty;
  ``on_cloud`` is ``Y`` when a cloud provider is known, else ``N``; ``pue`` from
  accounting, else 1.0. ``longitude``/``latitude`` empty (never looked up).
  CodeCarbon's dashboard reads the last row's ``country_iso_code`` as text, so it
  needs a run accounted with a known country.
- ``os``, ``python_version``, ``cpu_count``, ``cpu_model``, ``gpu_count``,
  ``gpu_model`` from ``result.metadata``; ``gpu_model`` as CodeCarbon writes it,
  ``"<n> x <name>"`` per model (joined with ``", "`` where CodeCarbon joins with
  nothing). ``ram_total_size`` in GiB, which CodeCarbon labels GB
  (``psutil`` total / 1024**3), so a greenai row and a CodeCarbon row from the same
  machine agree; greenai's metadata holds decimal GB and is converted.
- A ``torch.distributed`` job is one row, written by the process holding the job
  result (:attr:`Result.ranks` non-empty), with the job's totals. Its machine
  columns describe the whole job, from the ranks' own metadata, each node's machine
  counted once: ``cpu_count`` and ``ram_total_size`` are summed over the nodes,
  ``gpu_count`` counts the job's GPUs (devices of kind ``gpu``, a GPU several ranks
  shared once), ``gpu_model`` counts them by model (see
  :func:`greenai.report.job_view.node_machines`), and ``cpu_model``, ``os`` and
  ``python_version`` list the distinct values, joined with ``", "``. The file has
  no column for ranks or nodes (it stays CodeCarbon's); the JSON record has them.
- ``codecarbon_version``: ``greenai-<version>``. No CodeCarbon reader parses it
  (the dashboard never reads it; the API and BoAmps outputs carry it as free
  text), and it tells a reader of a shared file which tool wrote each row.
- ``tracking_mode``: ``process`` when a CPU or DRAM figure is greenai's per-process
  estimate (as CodeCarbon's process mode: CPU time share, resident memory),
  ``machine`` when they come from whole-package counters (RAPL) or are absent.
  GPUs are metered whole, as in both of CodeCarbon's modes.
- ``cpu_utilization_percent``, ``gpu_utilization_percent``,
  ``ram_utilization_percent``, ``ram_used_gb``: 0, what CodeCarbon writes when it
  took no utilization sample (greenai does not sample utilization).
- A partial run (a sensor failed) has no column here: the JSON record
  (:mod:`greenai.report.records`) carries ``partial`` and its reasons. Nor have the
  figures' uncertainty bounds (a column of its own would make the file no longer
  CodeCarbon's, which its readers and this writer's header check reject): the JSON
  record carries ``uncertainty_by_device_j``, and the Markdown and HTML reports show them.

Safety: writers take an exclusive ``flock`` on the CSV file itself (see
:func:`append_emissions_row`), and a file whose header is not CodeCarbon's is
never appended to or replaced (:class:`~greenai.core.errors.ReportError`).
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from greenai.core.errors import ReportError
from greenai.core.files import fsync_directory
from greenai.report.job_view import node_machines
from greenai.tracking.result import Result

if sys.platform != "win32":
    import fcntl

EMISSIONS_COLUMNS: tuple[str, ...] = (
    "timestamp",
    "project_name",
    "run_id",
    "experiment_id",
    "duration",
    "emissions",
    "emissions_rate",
    "cpu_power",
    "gpu_power",
    "ram_power",
    "cpu_energy",
    "gpu_energy",
    "ram_energy",
    "energy_consumed",
    "water_consumed",
    "country_name",
    "country_iso_code",
    "region",
    "cloud_provider",
    "cloud_region",
    "os",
    "python_version",
    "codecarbon_version",
    "cpu_count",
    "cpu_model",
    "gpu_count",
    "gpu_model",
    "longitude",
    "latitude",
    "ram_total_size",
    "tracking_mode",
    "cpu_utilization_percent",
    "gpu_utilization_percent",
    "ram_utilization_percent",
    "ram_used_gb",
    "on_cloud",
    "pue",
    "wue",
)
"""CodeCarbon 3.3's CSV columns, in its order: the fields of
``codecarbon.output_methods.emissions_data.EmissionsData``. Copied rather than
imported because importing CodeCarbon is slow; a test checks the copy against the
installed CodeCarbon and against a file CodeCarbon writes."""

TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S"
"""CodeCarbon's ``timestamp`` format (local time, no zone)."""

J_PER_KWH = 3.6e6
BYTES_PER_GB = 1e9
BYTES_PER_GIB = 2**30

_HEADER_PEEK_BYTES = 64 * 1024
"""How much of an existing file is read to find its header line. Units: bytes."""


def append_emissions_row(
    path: str | os.PathLike[str],
    result: Result,
    *,
    project_name: str | None = None,
    experiment_id: str = "",
) -> None:
    """Append one row for ``result`` to a CodeCarbon-format ``emissions.csv``.

    Several processes may append to one file at once: each takes an exclusive
    ``flock`` on the CSV file itself (not a sidecar ``.lock``, which would be left
    lying next to the CSV and could be deleted by a user while held; the CSV is
    never replaced, so every writer locks the same inode), writes the header only
    when the file is new or empty, and writes its row with a single ``write`` and
    an ``fsync`` before unlocking. The lock only coordinates greenai writers:
    CodeCarbon itself appends without locking. On Windows (no ``flock``) the row is
    appended unlocked.

    Args:
        path: The CSV file; created (not its folder) when missing.
        result: The run to record. See the module docstring for each column.
        project_name: CodeCarbon's ``project_name`` column (the dashboard groups by it);
            None: the run's name (``greenai`` for an unnamed run), so rows tell runs apart.
        experiment_id: CodeCarbon's ``experiment_id`` column.

    Raises:
        ReportError: The file exists with a header whose columns are not CodeCarbon's
            (another format or CodeCarbon version); the file is left untouched.
        OSError: The file cannot be opened, locked or written.
    """
    path = Path(path)
    row = emissions_row(result, project_name=project_name, experiment_id=experiment_id)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with _locked(fd):
            size = os.fstat(fd).st_size
            if size == 0:
                data = _format_lines([list(EMISSIONS_COLUMNS), [row[c] for c in EMISSIONS_COLUMNS]])
            else:
                columns = _checked_header(fd, path)
                data = _format_lines([[row[c] for c in columns]])
                if not _ends_with_newline(fd, size):
                    # A row torn by a crashed writer must not swallow ours.
                    data = b"\n" + data
            _write_all(fd, data)
            os.fsync(fd)
    finally:
        os.close(fd)
    if size == 0:
        fsync_directory(path.parent)


def emissions_row(
    result: Result, *, project_name: str | None = None, experiment_id: str = ""
) -> dict[str, str]:
    """The CSV cells for ``result``, by column, as text (empty cell = unknown).

    See the module docstring for the source and unit of each column.
    """
    accounting = result.accounting
    metadata = result.metadata
    pue = _float_or_none(accounting.get("pue"))
    pue = 1.0 if pue is None else pue
    duration_s = float(result.duration_s)
    co2_kg = _float_or_none(result.co2_kg)

    def power_w(energy_j: float) -> float:
        return energy_j * pue / duration_s if duration_s > 0 else 0.0

    def kwh(energy_j: float) -> float:
        return energy_j * pue / J_PER_KWH

    cloud_provider = _text(accounting.get("cloud_provider"))
    machine = _job_machine(result) if result.ranks else _machine(result)
    version = metadata.get("greenai_version")
    if version is None:
        from greenai import __version__ as version

    values: dict[str, object] = {
        "timestamp": time.strftime(
            TIMESTAMP_FORMAT, time.localtime(result.start_unix_s + max(duration_s, 0.0))
        ),
        "project_name": project_name if project_name is not None else result.name or "greenai",
        "run_id": result.run_id,
        "experiment_id": experiment_id,
        "duration": duration_s,
        "emissions": co2_kg,
        "emissions_rate": (
            None if co2_kg is None else co2_kg / duration_s if duration_s > 0 else 0.0
        ),
        "cpu_power": power_w(result.cpu_energy_j),
        "gpu_power": power_w(result.gpu_energy_j),
        "ram_power": power_w(result.dram_energy_j),
        "cpu_energy": kwh(result.cpu_energy_j),
        "gpu_energy": kwh(result.gpu_energy_j),
        "ram_energy": kwh(result.dram_energy_j),
        "energy_consumed": kwh(result.energy_j),
        "water_consumed": 0.0,
        "country_name": accounting.get("country_name"),
        "country_iso_code": accounting.get("country_iso_code"),
        "region": accounting.get("region"),
        "cloud_provider": cloud_provider,
        "cloud_region": accounting.get("cloud_region"),
        "os": machine["os"],
        "python_version": machine["python_version"],
        "codecarbon_version": f"greenai-{version}",
        "cpu_count": machine["cpu_count"],
        "cpu_model": machine["cpu_model"],
        "gpu_count": machine["gpu_count"],
        "gpu_model": machine["gpu_model"],
        "longitude": None,
        "latitude": None,
        "ram_total_size": machine["ram_total_size"],
        "tracking_mode": _tracking_mode(result),
        "cpu_utilization_percent": 0,
        "gpu_utilization_percent": 0,
        "ram_utilization_percent": 0,
        "ram_used_gb": 0,
        "on_cloud": "Y" if cloud_provider else "N",
        "pue": pue,
        "wue": 0.0,
    }
    return {column: _cell(values[column]) for column in EMISSIONS_COLUMNS}


def _machine(result: Result) -> dict[str, object]:
    """The machine columns of a single process's run, from its metadata."""
    metadata = result.metadata
    gpu_count = metadata.get("gpu_count")
    if gpu_count is None:
        gpu_count = sum(1 for kind in result.kinds.values() if kind == "gpu")
    return {
        "os": metadata.get("os"),
        "python_version": metadata.get("python_version"),
        "cpu_count": metadata.get("cpu_count"),
        "cpu_model": metadata.get("cpu_model"),
        "gpu_count": gpu_count,
        "gpu_model": _gpu_model(metadata.get("gpu_models")),
        "ram_total_size": _gib(_float_or_none(metadata.get("ram_total_gb"))),
    }


def _job_machine(result: Result) -> dict[str, object]:
    """The machine columns of a job: every node's machine once (see the module docstring)."""
    machines = node_machines(result)
    cpu_counts = [m.cpu_count for m in machines if m.cpu_count is not None]
    ram_gb = [m.ram_total_gb for m in machines if m.ram_total_gb is not None]
    models: Counter[str] = Counter()
    for m in machines:
        models.update(m.gpu_models)

    def distinct(values: Sequence[str | None]) -> str | None:
        known = list(dict.fromkeys(v for v in values if v))
        return ", ".join(known) if known else None

    return {
        "os": distinct([m.os for m in machines]),
        "python_version": distinct([m.python_version for m in machines]),
        "cpu_count": sum(cpu_counts) if cpu_counts else None,
        "cpu_model": distinct([m.cpu_model for m in machines]),
        "gpu_count": sum(1 for kind in result.kinds.values() if kind == "gpu"),
        "gpu_model": ", ".join(f"{n} x {name}" for name, n in models.items()),
        "ram_total_size": _gib(sum(ram_gb) if ram_gb else None),
    }


def _gib(ram_gb: float | None) -> float | None:
    """Decimal GB (greenai's metadata) as GiB (CodeCarbon's ``ram_total_size``)."""
    return None if ram_gb is None else ram_gb * BYTES_PER_GB / BYTES_PER_GIB


def _tracking_mode(result: Result) -> str:
    host_side = [d for d, kind in result.kinds.items() if kind in ("cpu", "dram")]
    return "process" if any(result.sources.get(d) == "estimate" for d in host_side) else "machine"


def _gpu_model(models: object) -> str:
    """CodeCarbon's ``gpu_model``: ``"<count> x <name>"`` per distinct model, first seen first."""
    if isinstance(models, str):
        return models
    if not isinstance(models, Sequence):
        return ""
    counts = Counter(str(m) for m in models)
    return ", ".join(f"{n} x {name}" for name, n in counts.items())


def _float_or_none(value: Any) -> float | None:
    """``value`` as a finite float, or None when it is missing, not a number or NaN."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _cell(value: object) -> str:
    """A value as CodeCarbon's pandas writes it: ``repr`` of floats, empty for None/NaN."""
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return str(value)


def _format_lines(rows: Sequence[Sequence[str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def _checked_header(fd: int, path: Path) -> list[str]:
    """The columns of an existing file's header, in its order, if they are CodeCarbon's.

    CodeCarbon accepts a file whose header holds its columns in another order and
    writes each row in the file's order; so does greenai.

    Raises:
        ReportError: The header's columns are not CodeCarbon's.
    """
    head = _read_at(fd, _HEADER_PEEK_BYTES, 0)
    first_line = head.split(b"\n", 1)[0].rstrip(b"\r")
    try:
        text = first_line.decode("utf-8")
    except UnicodeDecodeError:
        raise ReportError(
            f"{path} is not a CodeCarbon emissions CSV (its first line is not UTF-8 text); "
            "refusing to append to it"
        ) from None
    header = next(csv.reader([text]), [])
    if sorted(header) == sorted(EMISSIONS_COLUMNS):
        return header
    raise ReportError(
        f"{_not_emissions(path, header)}; refusing to append to it. Write to another file "
        "or move this one away."
    )


def _not_emissions(path: Path, header: list[str]) -> str:
    """Why a header is not CodeCarbon's: the expected columns it lacks, never its own text."""
    missing = [c for c in EMISSIONS_COLUMNS if c not in header]
    extra = [c for c in header if c not in EMISSIONS_COLUMNS]
    details = []
    if missing:
        details.append(f"missing columns {missing}")
    if extra:
        details.append(f"{len(extra)} unexpected columns")  # not their names: the content
    if not details:
        details.append("repeated columns")
    return (
        f"{path} has a header that is not CodeCarbon 3.3's emissions columns ({'; '.join(details)})"
    )


def _ends_with_newline(fd: int, size: int) -> bool:
    return _read_at(fd, 1, size - 1) == b"\n"


def _read_at(fd: int, count: int, offset: int) -> bytes:
    """Up to ``count`` bytes at ``offset`` (``os.pread`` is POSIX-only). Appends ignore the seek."""
    os.lseek(fd, offset, os.SEEK_SET)
    return os.read(fd, count)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


@contextlib.contextmanager
def _locked(fd: int) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``fd`` (blocking); released on exit or when the fd closes."""
    if sys.platform == "win32":
        yield
        return
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def read_emissions_csv(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """The rows of an emissions CSV as text cells by column, without pandas.

    Raises:
        ReportError: The file's header is not CodeCarbon's columns, or it is not UTF-8
            CSV text; the message names the path and what was expected, not the content.
    """
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        try:
            header = list(reader.fieldnames or [])
            if sorted(header) != sorted(EMISSIONS_COLUMNS):
                raise ReportError(_not_emissions(path, header))
            return [dict(row) for row in reader]
        except (csv.Error, UnicodeDecodeError) as e:  # named, not quoted: any file may be here
            raise ReportError(
                f"{path} is not a CodeCarbon emissions CSV (line {reader.line_num}: "
                "not UTF-8 CSV text)"
            ) from e


__all__ = [
    "EMISSIONS_COLUMNS",
    "TIMESTAMP_FORMAT",
    "append_emissions_row",
    "emissions_row",
    "read_emissions_csv",
]
