"""How the command line reports a user's mistake: ``greenai: error: ...`` and an exit status.

Exit statuses: 2 when the command line itself is wrong (an unknown option, a value that
names nothing usable: no such run, no CUDA device, an output folder that cannot be
written); 1 when a file it names cannot be read, written or parsed, or the run fails.
A message names the argument and its value, and the path and line of a file greenai
could not parse, never the file's content.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

USAGE = 2
"""Exit status of a wrong command line."""

FAILED = 1
"""Exit status of a file that cannot be read, written or parsed, or a run that failed."""

PATH_OPTIONS = {
    "record": "RUN",
    "html": "--html",
    "md": "--md",
    "csv": "--csv",
    "db": "--db",
    "output_dir": "--output-dir",
    "intensity_csv": "--intensity-csv",
    "config_path": "--config",
}
"""The arguments that name a file or folder, by their ``argparse`` dest."""


class CliError(Exception):
    """A mistake of the user's, to show as ``greenai: error: <message>`` and exit ``status``."""

    def __init__(self, message: str, status: int = FAILED) -> None:
        super().__init__(message)
        self.status = status


class UsageError(CliError):
    """The command line is wrong (exit 2)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, USAGE)


def os_error_message(args: argparse.Namespace, error: OSError) -> str:
    """``--md out: Is a directory``: the argument whose path failed, and why."""
    why = error.strerror or type(error).__name__
    # A rename's target (filename2) is the path the user named; its source a temporary file.
    named = [Path(os.fsdecode(f)) for f in (error.filename2, error.filename) if f is not None]
    failed = next((f for f in named if _path_option(args, f) is not None), named[-1])
    option = _path_option(args, failed)
    if option is None:
        return f"{failed}: {why}"
    name, value = option
    if failed == value:
        return f"{name} {value}: {why}"
    if failed in value.parents and failed.is_file():  # mkdir's "File exists" says too little
        why = "is a file, not a folder"
    return f"{name} {value}: {failed}: {why}"


def named_message(args: argparse.Namespace, message: str) -> str:
    """``message``, prefixed with the argument whose path it names (``--csv: foreign.csv ...``)."""
    found = [
        (len(str(value)), name)
        for name, value in _path_values(args)
        if re.search(rf"(?<![\w./-]){re.escape(str(value))}(?![\w./-])", message)
    ]
    return f"{max(found)[1]}: {message}" if found else message


def check_output_dir(path: Path) -> None:
    """Refuse, before a run starts, an output folder its reports could not be written to.

    The folder may not exist yet (it is created at the end of the run), but then
    its nearest existing parent must be a writable folder. An ``emissions.csv``
    already there must be a CodeCarbon one, as greenai appends to it.

    Raises:
        UsageError: It is a file, lies under a file, is not writable, or holds a
            foreign ``emissions.csv``; the message names ``--output-dir`` and the path.
    """
    existing = path
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    blocked = "" if existing == path else f"cannot be created: {existing} "
    if not existing.is_dir():
        raise UsageError(f"--output-dir {path}: {blocked}is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"--output-dir {path}: {blocked}is not writable")
    emissions = path / "emissions.csv"
    if emissions.exists():
        _check_emissions_csv(emissions)


def _check_emissions_csv(path: Path) -> None:
    from greenai.report.csv_report import EMISSIONS_COLUMNS

    if not path.is_file() or not os.access(path, os.R_OK | os.W_OK):
        raise UsageError(f"--output-dir: {path} is not a file greenai can append to")
    with path.open("rb") as f:
        first = f.readline(64 * 1024).rstrip(b"\r\n")
    try:
        header = first.decode("utf-8").split(",")
    except UnicodeDecodeError:
        header = []
    if first and sorted(header) != sorted(EMISSIONS_COLUMNS):
        raise UsageError(
            f"--output-dir: {path} is not a CodeCarbon emissions CSV (its header, line 1, "
            "is not CodeCarbon's columns); greenai would not append to it. Move it away or "
            "choose another --output-dir."
        )


def _path_option(args: argparse.Namespace, failed: Path) -> tuple[str, Path] | None:
    """The argument whose path is ``failed``, holds it (a file inside ``--output-dir``) or
    lies under it (a parent folder that cannot be created)."""
    values = _path_values(args)
    for name, value in values:
        if failed == value:
            return name, value
    for name, value in values:
        if value in failed.parents or failed in value.parents:
            return name, value
    return None


def _path_values(args: argparse.Namespace) -> list[tuple[str, Path]]:
    return [
        (name, Path(value))
        for dest, name in PATH_OPTIONS.items()
        if isinstance(value := getattr(args, dest, None), (str, Path))
    ]
