"""The ``greenai`` command line (also ``python -m greenai``).

Commands: ``run`` (meter any command), ``report`` (render a saved run),
``devices`` (what this machine can meter, and why anything is missing),
``history`` and ``compare`` (the local run history), ``limits`` (GPU power limits and
restoring them: :mod:`greenai.cli.limits`), ``demo``.

A user's mistake prints ``greenai: error: ...`` naming the argument and exits 2 (a
wrong command line) or 1 (a file that cannot be read, written or parsed): see
:mod:`greenai.cli.errors`. Only :func:`main` catches, and only those errors; anything
else is a greenai bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from greenai.cli.errors import (
    CliError,
    UsageError,
    check_output_dir,
    named_message,
    os_error_message,
)
from greenai.cli.limits import add_command as add_limits_command
from greenai.core.errors import GreenAIError
from greenai.core.units import (
    format_co2_si,
    format_duration_short,
    format_energy_si,
    format_usd,
    format_utc,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from greenai.report.comparison import Delta
    from greenai.tracking.result import Result


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit status (argparse itself exits 2 on a bad option)."""
    parser = _parser()
    args = parser.parse_args(argv)
    command: Any = args.handler
    try:
        status: int = command(args)
    except KeyboardInterrupt:
        return 130
    except CliError as e:
        return _fail(str(e), e.status)
    except OSError as e:
        if not isinstance(e.filename, (str, bytes, os.PathLike)):
            raise  # not about a path the user gave: a bug, shown in full
        return _fail(os_error_message(args, e), 1)
    except GreenAIError as e:
        return _fail(named_message(args, str(e)), 1)
    return status


def _fail(message: str, status: int) -> int:
    print(f"greenai: error: {message}", file=sys.stderr)
    return status


class _Version(argparse.Action):
    """``--version``: greenai's version and how its native module was built, then exit 0."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        from greenai import __version__

        try:
            from greenai import _C
        except ImportError:
            native = "native module not built"
        else:
            build = _C.build_info()
            cuda = f"CUDA {build['cuda_version']}" if build["cuda"] else "CPU only, no CUDA"
            native = f"native module {build['version']}, {cuda}"
        print(f"greenai {__version__} ({native})")
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="greenai", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action=_Version, help="show the version and exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="meter a command: greenai run [options] -- CMD ...")
    run.add_argument("--name", help="the run's name (default: the command's name)")
    run.add_argument(
        "--output-dir", type=Path, help="append to DIR/emissions.csv and write DIR/<run_id>.json"
    )
    run.add_argument(
        "--no-live",
        action="store_true",
        help="no live power line on the terminal (default: shown on a TTY)",
    )
    _accounting_options(run)
    run.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ...")
    run.set_defaults(handler=_run)

    report = commands.add_parser(
        "report", help="render a saved run: RUN.json, or a run of the history"
    )
    report.add_argument(
        "record",
        metavar="RUN",
        help="a run record (RUN.json), or a run_id, unique prefix or index (1 = latest) "
        "as greenai history lists them",
    )
    report.add_argument("--html", type=Path, metavar="OUT.html", help="write an HTML report")
    report.add_argument(
        "--md",
        type=Path,
        metavar="OUT.md",
        help="write a Markdown summary ('-' for standard output)",
    )
    report.add_argument(
        "--csv",
        type=Path,
        metavar="OUT.csv",
        help="append the run to a CodeCarbon-style emissions.csv",
    )
    report.add_argument("--db", type=Path, help="history database (default: the user data dir)")
    report.set_defaults(handler=_report)

    devices = commands.add_parser("devices", help="what this machine can meter, and how")
    devices.set_defaults(handler=_devices)
    add_limits_command(commands)

    history = commands.add_parser("history", help="list the runs recorded on this machine")
    history.add_argument(
        "--limit", type=_positive_int, default=20, help="how many runs, newest first (default: 20)"
    )
    history.add_argument("--db", type=Path, help="history database (default: the user data dir)")
    history.add_argument("--json", action="store_true", help="print JSON")
    history.set_defaults(handler=_history)

    compare = commands.add_parser("compare", help="compare two runs: energy, CO2, cost, time")
    compare.add_argument("a", help="baseline run: run_id, unique prefix, or index (1 = latest)")
    compare.add_argument("b", help="the run to compare with it")
    compare.add_argument("--db", type=Path, help="history database (default: the user data dir)")
    compare.add_argument("--json", action="store_true", help="print JSON")
    compare.add_argument(
        "--html",
        type=Path,
        metavar="OUT.html",
        help="also write a page with both runs side by side (power and energy charts)",
    )
    compare.set_defaults(handler=_compare)

    demo = commands.add_parser(
        "demo", help="train a small torch model on synthetic data under greenai.track()"
    )
    demo.add_argument("--seconds", type=float, default=20.0, help="how long to train (default: 20)")
    demo.add_argument(
        "--device",
        default=None,
        help="torch device to train on (default: cuda if available, else cpu)",
    )
    demo.add_argument("--output-dir", type=Path, help="also write emissions.csv and RUN.json")
    _accounting_options(demo)
    demo.set_defaults(handler=_demo)
    return parser


def _accounting_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "where and at what price (default: config file, then GREENAI_* variables)"
    )
    group.add_argument("--country", help="ISO 3166 alpha-3 code, e.g. FRA")
    group.add_argument("--region", help="a region CodeCarbon knows, e.g. california")
    group.add_argument("--cloud", help="provider:region, e.g. gcp:europe-west1")
    group.add_argument("--pue", type=float, help="data-centre PUE (default: 1.0)")
    group.add_argument("--price-per-kwh", type=float, help="electricity price, USD per kWh")
    group.add_argument("--gpu-hour-price", type=float, help="price of one GPU-hour, USD")
    group.add_argument(
        "--intensity",
        type=float,
        dest="intensity_g_per_kwh",
        help="a fixed grid intensity, g CO2e per kWh",
    )
    group.add_argument("--intensity-csv", type=Path, help="hourly intensity: timestamp,g_per_kwh")
    group.add_argument("--config", type=Path, dest="config_path", help="a greenai TOML config")


def _accounting_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    keys = (
        "country",
        "region",
        "cloud",
        "pue",
        "price_per_kwh",
        "gpu_hour_price",
        "intensity_g_per_kwh",
        "intensity_csv",
        "config_path",
    )
    return {k: getattr(args, k) for k in keys}


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _run(args: argparse.Namespace) -> int:
    from greenai.cli.runner import CommandError, run_command
    from greenai.tracker import Tracker

    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise UsageError("run: give the command after '--', e.g. greenai run -- python train.py")
    if args.output_dir is not None:
        check_output_dir(args.output_dir)
    try:
        tracker = Tracker(
            args.name or Path(cmd[0]).name, output_dir=args.output_dir, **_accounting_kwargs(args)
        )
    except ValueError as e:
        raise UsageError(str(e)) from e
    try:
        status, result = run_command(cmd, tracker, live=False if args.no_live else None)
    except CommandError as e:
        raise CliError(str(e), e.exit_status) from e
    print(result.summary(), file=sys.stderr)
    _say_where_saved(result, args.output_dir)
    return status


def _say_where_saved(result: Result, output_dir: Path | None) -> None:
    """On stderr: the record, emissions.csv and history entry the run was saved to.

    Only what is there now is named: an output that failed has already warned.
    """
    from greenai.report.history import History
    from greenai.report.records import record_path
    from greenai.tracker import history_path

    saved = []
    if output_dir is not None and result.run_id:
        record = record_path(output_dir, result)
        if record.is_file():
            saved.append(f"  record     {record}")
        if (output_dir / "emissions.csv").is_file():
            saved.append(f"  emissions  {output_dir / 'emissions.csv'}")
    history = history_path(None)
    if history is not None and history.is_file() and result.run_id in History(history):
        saved.append(
            f"  history    {history} (greenai report {result.run_id[:8]}, greenai history)"
        )
    if saved:
        print(f"greenai: run {result.run_id} saved:", *saved, sep="\n", file=sys.stderr)


def _report(args: argparse.Namespace) -> int:
    result = _load_run(args.record, args.db)
    if args.html is None and args.md is None and args.csv is None:
        print(result.summary())
        return 0
    if args.html is not None:
        from greenai.report.html import write_html

        write_html(args.html, result)
    if args.md is not None:
        from greenai.report.markdown import render_markdown

        text = render_markdown(result)
        if str(args.md) == "-":
            sys.stdout.write(text)
        else:
            args.md.write_text(text, encoding="utf-8")
    if args.csv is not None:
        from greenai.report.csv_report import append_emissions_row

        append_emissions_row(args.csv, result)
    return 0


def _load_run(ref: str, db: Path | None) -> Result:
    """The run ``ref`` names: a record file, else a run of the history (id, prefix or index).

    A ref that looks like a path (``.json``, a folder separator) is only ever a file.
    """
    from greenai.report.history import History, default_history_path
    from greenai.report.records import read_record

    path = Path(ref)
    if path.exists():
        try:
            return read_record(path)
        except ValueError as e:
            raise CliError(f"RUN {ref}: {e}") from e
    if path.suffix == ".json" or os.sep in ref or "/" in ref:
        raise UsageError(f"RUN {ref}: no such file")
    history = default_history_path() if db is None else db
    if not history.is_file():
        raise UsageError(f"RUN {ref}: no such file, and no run history at {history}")
    try:
        return History(history).get_full(ref)
    except KeyError as e:
        raise UsageError(f"RUN {ref}: no such file; {e.args[0]}") from e
    except ValueError as e:
        raise CliError(f"RUN {ref}: {e}") from e


def _devices(args: argparse.Namespace) -> int:
    from greenai import _C, __version__, devices

    reasons = _ProbeLog()
    logger = logging.getLogger("greenai.devices")
    logger.addHandler(reasons)
    previous = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        devices.reset_cache()
        found = devices.probe()
    finally:
        logger.removeHandler(reasons)
        logger.setLevel(previous)
    build = _C.build_info()
    print(
        f"greenai {__version__}: native module built with CUDA={build['cuda']} "
        f"({build['cuda_version'] or 'no CUDA'}), CUDA devices usable: "
        f"{_C.cuda_device_count()}"
    )
    if not found:
        print("nothing to meter")
    for d in found:
        how = {
            "nvml-counter": "NVML energy counter",
            "nvml-power": "NVML power, integrated",
            "rapl": "RAPL energy counter",
            "estimate": "ESTIMATE (not measured)",
            "sim": "simulated GPU",
        }[d.source]
        print(f"  {d.name:<6} {d.kind:<5} {how:<26} {d!r}")
    if reasons.lines:
        print("not metered, and why:")
        for line in reasons.lines:
            print(f"  - {line}")
    return 0


class _ProbeLog(logging.Handler):
    """Collects the probes' debug lines: each says why something is absent."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _history(args: argparse.Namespace) -> int:
    from greenai.report.history import History

    runs = History(args.db).runs(limit=args.limit)
    if args.json:
        print(json.dumps([dataclasses.asdict(r) for r in runs], indent=2))
        return 0
    if not runs:
        print("no runs recorded yet")
        return 0
    print(
        f"{'#':>3}  {'run_id':<8}  {'started (UTC)':<19}  {'name':<20} {'time':>10} "
        f"{'energy':>12} {'CO2e':>10} {'cost':>9}"
    )
    for r in runs:  # the same formatter for each figure as every other output
        cost = "-" if r.cost_usd is None else format_usd(r.cost_usd)
        print(
            f"{r.index:>3}  {r.run_id[:8]:<8}  {format_utc(r.start_unix_s, iso=False):<19}  "
            f"{(r.name or '')[:20]:<20} {format_duration_short(r.duration_s):>10} "
            f"{format_energy_si(r.energy_j):>12} {format_co2_si(r.co2_kg):>10} {cost:>9}"
            + ("  PARTIAL" if r.partial else "")
        )
    return 0


def _compare(args: argparse.Namespace) -> int:
    from greenai.report.comparison import compare_results
    from greenai.report.history import History

    history = History(args.db)
    try:
        if args.html is None:
            comparison = history.compare(args.a, args.b)
        else:  # the charts need each run's full record (its timeline)
            comparison = compare_results(history.get_full(args.a), history.get_full(args.b))
    except (KeyError, ValueError) as e:
        raise UsageError(f"compare: {e.args[0] if e.args else e}") from e
    if args.html is not None:
        from greenai.report.html_compare import write_compare_html

        write_compare_html(args.html, comparison)
    if args.json:
        print(json.dumps(comparison.to_dict(), indent=2))
        return 0
    print(f"a: {comparison.a.run_id[:8]} {comparison.a.name or ''}")
    print(f"b: {comparison.b.run_id[:8]} {comparison.b.name or ''}")
    rows: tuple[tuple[str, Delta, Callable[[float], str]], ...] = (
        ("energy", comparison.energy_j, format_energy_si),
        ("CO2e", comparison.co2_kg, format_co2_si),
        ("cost", comparison.cost_usd, format_usd),
        ("time", comparison.duration_s, format_duration_short),
    )
    for label, delta, fmt in rows:  # the formatters of every other output
        if delta.a is None or delta.b is None or delta.diff is None:
            print(f"  {label:<7} unknown for one of the runs")
            continue
        rel = f" ({delta.rel:+.1%})" if delta.rel is not None else ""
        diff = ("-" if delta.diff < 0 else "+") + fmt(abs(delta.diff))
        print(f"  {label:<7} {fmt(delta.a):>12} -> {fmt(delta.b):>12}  {diff}{rel}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    if not args.seconds > 0:
        raise UsageError(f"--seconds must be positive, got {args.seconds!r}")
    try:
        import torch  # noqa: F401
    except ImportError as e:
        raise UsageError(f"greenai demo needs torch: pip install 'greenai[torch]' ({e})") from e
    from greenai.cli.demo import run_demo, torch_device

    try:
        torch_device(args.device)
    except ValueError as e:
        raise UsageError(f"--device {args.device}: {e}") from e
    if args.output_dir is not None:
        check_output_dir(args.output_dir)
    try:
        result = run_demo(
            seconds=args.seconds,
            device=args.device,
            output_dir=args.output_dir,
            **_accounting_kwargs(args),
        )
    except ValueError as e:
        raise UsageError(str(e)) from e
    print(result.summary())
    for window in result.windows:
        print(window.summary())
    _say_where_saved(result, args.output_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
