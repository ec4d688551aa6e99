"""Command line: ``localpar demo`` and ``localpar info`` (or ``python -m localpar ...``).

``demo`` replays the data publication workflow with a live text view;
``info`` shows what a cluster started here would use, for bug reports.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import platform
import sys
from typing import Dict, List, Optional, Sequence, TextIO

EXTRAS = ("tqdm", "ipyparallel", "matplotlib")
"""Optional packages localpar uses when present."""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def program_name() -> str:
    """How the user called us: ``python -m localpar`` or the ``localpar`` console script."""
    return "python -m localpar" if os.path.basename(sys.argv[0]) == "__main__.py" else "localpar"


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog=program_name(), description="localpar: an IPython.parallel-style cluster on one machine."
    )
    parser.add_argument("--version", action="version", version=f"localpar {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = commands.add_parser("demo", help="run the data publication demo with a live text view")
    demo.add_argument("--engines", type=_positive_int, default=None, metavar="N", help="engines (default: CPUs)")
    demo.add_argument("--steps", type=_positive_int, default=10, metavar="K", help="steps per engine (default: 10)")
    demo.add_argument(
        "--interval", type=_non_negative_float, default=1.0, metavar="S", help="seconds per step (default: 1.0)"
    )
    demo.add_argument(
        "--plot",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="save a plot of the published data (default: if matplotlib is installed)",
    )
    demo.add_argument("--plot-path", default=None, metavar="FILE", help="where to save the plot")

    commands.add_parser("info", help="show the version, start method, CPUs and optional extras")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command in `argv` (default: ``sys.argv[1:]``); returns the exit code."""
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        return run_demo_command(args)
    return print_info()


def run_demo_command(args: argparse.Namespace) -> int:
    from .demo import run_demo  # imported here: numpy and the cluster machinery only when needed

    options = {} if args.plot_path is None else {"plot_path": args.plot_path}
    try:
        return run_demo(engines=args.engines, steps=args.steps, interval=args.interval, plot=args.plot, **options)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


def extras() -> Dict[str, Optional[str]]:
    """``{package: version or None if not installed}`` for the optional extras."""
    found: Dict[str, Optional[str]] = {}
    for name in EXTRAS:
        if importlib.util.find_spec(name) is None:
            found[name] = None
            continue
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "installed"
    return found


def cpu_count() -> str:
    from ..processes.spin import usable_cpus

    total = os.cpu_count() or 1
    usable = usable_cpus()
    return str(total) if usable == total else f"{total} ({usable} usable by this process)"


def spin_setting() -> str:
    from ..processes import spin

    if spin.SPIN_SECONDS <= 0:
        return f"off (set {spin.SPIN_ENV} to microseconds to turn it on)"
    engines = f"{spin.MAX_SPINNERS} engine{'s' if spin.MAX_SPINNERS != 1 else ''}"
    return f"{spin.SPIN_SECONDS * 1e6:.0f} µs, up to {engines} at once ({spin.SPIN_ENV}=0 turns it off)"


def print_info(out: Optional[TextIO] = None) -> int:
    from .. import __version__
    from ..client.client import default_start_method

    out = sys.stdout if out is None else out
    rows: List[tuple] = [
        ("localpar", __version__),
        ("start method", default_start_method()),
        ("CPUs", cpu_count()),
        ("spin before blocking", spin_setting()),
        ("Python", f"{platform.python_version()} ({platform.python_implementation()}, {sys.executable})"),
        ("platform", platform.platform()),
    ]
    rows += [(name, version or "not installed") for name, version in extras().items()]
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        print(f"{key + ':':<{width + 1}} {value}", file=out)
    return 0
