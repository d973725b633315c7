"""``greenai limits``: the GPUs' power limits, what greenai's journal says it changed, and
putting back what killed runs left (``--restore``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from greenai.cli.errors import CliError


def add_command(commands: Any) -> None:
    """Add ``limits`` to the ``greenai`` command line's subcommands."""
    limits = commands.add_parser(
        "limits",
        help="GPU power limits: in force, default, what greenai changed; restore them",
    )
    limits.add_argument(
        "--restore",
        action="store_true",
        help="put back the limits that greenai runs which are gone left changed",
    )
    limits.add_argument(
        "--journal",
        type=Path,
        metavar="FILE",
        help="the power-limit journal (default: power_limits.json in the state folder)",
    )
    limits.set_defaults(handler=run_limits)


def run_limits(args: argparse.Namespace) -> int:
    """Show the journal and the GPUs; with ``--restore``, restore first. Exit 1 when a
    limit that a finished run changed is still not back."""
    from greenai.control.limit_journal import JournalUnreadable, default_journal_path
    from greenai.control.limits import recover
    from greenai.control.recovery import journal_entries

    path = args.journal if args.journal is not None else default_journal_path()
    if args.restore:
        for line in recover(path):
            print(f"restored {line}")
    try:
        entries = journal_entries(path)
    except JournalUnreadable as e:
        raise CliError(f"--journal {path}: {e}") from None
    except OSError as e:
        raise CliError(f"--journal {path}: cannot be read ({e.strerror or e})") from None
    print(f"journal {path}: " + ("empty" if not entries else f"{len(entries)} entries"))
    for entry in entries:
        state = "running, steering" if entry.alive else "gone: left changed"
        print(
            f"  pid {entry.pid} on {entry.hostname} ({state}): {entry.name} ({entry.key}) "
            f"original {_watts(entry.original_limit_w)}"
        )
    _show_gpus(path)
    left = [e for e in entries if not e.alive]
    if left:
        hint = "" if args.restore else "; `greenai limits --restore` puts them back"
        print(f"{len(left)} limit(s) left changed by runs that are gone{hint}")
        return 1
    return 0


def _show_gpus(journal: Path) -> None:
    from greenai.control.lease import holder, lease_path
    from greenai.control.limit_journal import device_key
    from greenai.control.recovery import default_limit_w
    from greenai.core.errors import DeviceError
    from greenai.devices import probe_gpus

    gpus = probe_gpus()
    if not gpus:
        print("no NVIDIA GPU visible (`greenai devices` says why)")
    for gpu in gpus:
        key = device_key(gpu)
        try:
            limit = _watts(gpu.power_limit_w())
            lo_w, hi_w = gpu.power_limit_range_w()
            span = f"[{lo_w:g}, {hi_w:g}] W"
        except DeviceError as e:
            limit, span = f"unreadable ({e})", "unknown"
        held = holder(lease_path(journal.parent, key))
        print(
            f"  {gpu.name} ({key}): limit {limit}, default {_watts(default_limit_w(gpu))}, "
            f"range {span}, " + (f"controlled by {held}" if held else "not controlled")
        )


def _watts(value: object) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:g} W"
    return "unknown"
