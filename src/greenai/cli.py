"""The ``greenai`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="greenai", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="train a small torch model on synthetic data under greenai.track()"
    )
    demo.add_argument("--seconds", type=float, default=20.0, help="how long to train (default: 20)")
    demo.add_argument(
        "--device",
        default=None,
        help="torch device to train on (default: cuda if available, else cpu)",
    )
    commands.add_parser("info", help="show what greenai can meter on this machine")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from greenai.demo import run_demo

        if not args.seconds > 0:
            parser.error(f"--seconds must be positive, got {args.seconds!r}")
        try:
            result = run_demo(seconds=args.seconds, device=args.device)
        except ImportError as e:
            print(f"greenai demo needs torch: pip install 'greenai[torch]' ({e})", file=sys.stderr)
            return 2
        print(result.summary())
        for window in result.windows:
            print(window.summary())
        return 0
    return _info()


def _info() -> int:
    from greenai import _C, __version__
    from greenai.devices import probe

    build = _C.build_info()
    print(
        f"greenai {__version__} (native: cuda={build['cuda']}, "
        f"cuda_version={build['cuda_version']}, cuda devices={_C.cuda_device_count()})"
    )
    devices = probe()
    if not devices:
        print("no devices to meter")
    for d in devices:
        counter = "energy counter" if d.has_energy_counter else "power readings"
        print(f"  {d.name:<6} {d.kind:<5} source={d.source:<13} ({counter}) {d!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
