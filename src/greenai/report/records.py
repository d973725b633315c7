"""A run's JSON record: everything on its :class:`~greenai.tracking.result.Result`, atomically.

A record is ``result.to_dict()`` plus ``"format": "greenai-run"`` and
``"format_version": 1``, so a reader can tell a greenai record from any other
JSON file and refuse one written by a newer, incompatible greenai. It is the
lossless form of a run (windows, timeline, steps, partial flag and its reasons,
accounting, machine metadata); the CSV and the history database are views of it.

The file is strict JSON (no ``NaN``/``Infinity``, which many parsers reject):
every non-finite number is written as ``null``. Reading a record back turns
``null`` power samples and step figures into NaN again; a ``null`` where a
total is required (an energy, the duration) makes the record unreadable, as it
should, since such a result was broken before it was written.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from greenai.core.files import write_atomic
from greenai.tracking.result import Result

RECORD_FORMAT = "greenai-run"
"""The ``format`` field of every run record."""

RECORD_FORMAT_VERSION = 1
"""The ``format_version`` this greenai writes and reads."""


def record_path(output_dir: str | os.PathLike[str], result: Result) -> Path:
    """Where ``result``'s record goes in ``output_dir``: ``<output_dir>/<run_id>.json``.

    Raises:
        ValueError: The result has no ``run_id``, or one that is not a plain file name.
    """
    run_id = result.run_id
    if not run_id or run_id in (".", "..") or any(sep in run_id for sep in ("/", "\\", "\0")):
        raise ValueError(f"cannot name a record after run_id {run_id!r}: not a plain file name")
    return Path(output_dir) / f"{run_id}.json"


def record_dict(result: Result) -> dict[str, Any]:
    """The record's content: ``format``, ``format_version``, then ``result.to_dict()``.

    Non-finite floats become None, so the dict is strict JSON.
    """
    data: dict[str, Any] = {"format": RECORD_FORMAT, "format_version": RECORD_FORMAT_VERSION}
    data.update(result.to_dict())
    cleaned: dict[str, Any] = _finite(data)
    return cleaned


def record_json(result: Result) -> str:
    """The record as strict JSON text (one line)."""
    return json.dumps(record_dict(result), allow_nan=False, ensure_ascii=False)


def write_record(path: str | os.PathLike[str], result: Result) -> Path:
    """Write ``result``'s JSON record to ``path`` atomically.

    The record goes to a temporary file in the same folder, is flushed and
    ``fsync``-ed, then renamed over ``path`` (``os.replace``) and the folder is
    ``fsync``-ed: a reader sees the old record or the new one, never half of one,
    even after a crash or power loss. A failed write leaves the old file as it
    was and removes the temporary file. Missing parent folders are created.

    Args:
        path: The record file, e.g. :func:`record_path`'s answer.
        result: The run.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OSError: The folder or file cannot be written.
    """
    return write_atomic(path, (record_json(result) + "\n").encode("utf-8"))


def read_record(path: str | os.PathLike[str]) -> Result:
    """Read a run record written by :func:`write_record`.

    Raises:
        ValueError: The file is not JSON, not a greenai run record, written in another
            ``format_version``, or missing required fields; the message names the file.
        OSError: The file cannot be read.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:  # its message is a position, not the text
        raise ValueError(f"{path} is not a greenai run record: not JSON ({e})") from e
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not a greenai run record: not UTF-8 text") from e
    return result_from_record(data, source=str(path))


def result_from_record(data: Any, *, source: str = "record") -> Result:
    """A :class:`Result` from a parsed record, after checking ``format`` and ``format_version``.

    Args:
        data: The parsed JSON.
        source: Named in error messages (a file name).

    Raises:
        ValueError: Not a greenai run record, another ``format_version``, or broken. The
            message names what was expected, never a value from ``data`` (it may be any
            JSON file), except an integer ``format_version``.
    """
    if not isinstance(data, Mapping) or data.get("format") != RECORD_FORMAT:
        found = "a JSON object" if isinstance(data, Mapping) else f"a JSON {_json_kind(data)}"
        raise ValueError(
            f"{source} is not a greenai run record (expected an object with format "
            f"{RECORD_FORMAT!r}, found {found} without it)"
        )
    version = data.get("format_version")
    if type(version) is not int or version != RECORD_FORMAT_VERSION:
        newer = type(version) is int and version > RECORD_FORMAT_VERSION
        hint = "; it was written by a newer greenai: upgrade greenai to read it" if newer else ""
        found = str(version) if type(version) is int else "no integer"
        raise ValueError(
            f"{source} has format_version {found}; this greenai reads version "
            f"{RECORD_FORMAT_VERSION}{hint}"
        )
    try:
        return Result.from_dict(data)
    except ValueError as e:
        cause = e.__cause__
        what = (
            f"the required field {cause.args[0]!r} is missing"
            if isinstance(cause, KeyError) and str(cause.args[0]).isidentifier()  # our key
            else "a field is missing or has the wrong type or value"
        )
        raise ValueError(f"{source} is a broken greenai run record: {what}") from e


def _json_kind(data: Any) -> str:
    """The JSON type of a parsed value, e.g. ``"array"``: named instead of the value."""
    kinds = {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if data is None else kinds.get(type(data), type(data).__name__)


def _finite(value: Any) -> Any:
    """``value`` with NumPy values as plain ones and every NaN or infinity replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if hasattr(value, "tolist") and hasattr(value, "dtype"):  # a NumPy scalar or array
        return _finite(value.tolist())
    return value


__all__ = [
    "RECORD_FORMAT",
    "RECORD_FORMAT_VERSION",
    "read_record",
    "record_dict",
    "record_json",
    "record_path",
    "result_from_record",
    "write_record",
]
