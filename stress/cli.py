"""``python -m stress``: the command line of the stress runner.

Exit codes: 0 every invariant held and every target was met; 1 at least one
invariant was violated; 2 bad arguments; 3 the deadlock watchdog fired (every
thread's stack is on stderr); 4 every invariant held but the time limit ended
the run before its targets were met.
"""

from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Sequence
from pathlib import Path

from stress.config import CLIENT_IO_TIMEOUT, DEADLOCK_TIMEOUT, DEFAULT_SWITCH_INTERVAL, StressConfig
from stress.runner import run

__all__ = ["build_parser", "config_from_args", "main"]


def _lock_debug_available() -> bool:
    return importlib.util.find_spec("threadlisten.debug") is not None


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``python -m stress``."""
    p = argparse.ArgumentParser(
        prog="python -m stress",
        description="Stress threadlisten's shared THREADSAFE listeners with API threads and "
        "real loopback clients, accounting for every connection, descriptor and thread.",
        epilog="The run ends when every given target (--duration, --operations, "
        "--connections) is met, or at --time-limit.  Exit codes: 0 ok, 1 invariant "
        "violated, 2 usage, 3 deadlock, 4 targets missed.",
    )
    t = p.add_argument_group("targets")
    t.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="S",
        help="run at least S seconds (default 30 when no target is given)",
    )
    t.add_argument(
        "--operations", type=int, default=None, metavar="N", help="make at least N API operations"
    )
    t.add_argument(
        "--connections",
        type=int,
        default=None,
        metavar="N",
        help="attempt at least N client connections",
    )
    t.add_argument(
        "--time-limit",
        type=float,
        default=None,
        metavar="S",
        help="stop after S seconds whatever the targets (default max(2*duration, 60))",
    )
    s = p.add_argument_group("shape")
    s.add_argument("--api-threads", type=int, default=4, metavar="N")
    s.add_argument(
        "--clients",
        type=int,
        default=8,
        metavar="N",
        help="client threads in all; each has one connection in flight",
    )
    s.add_argument(
        "--client-processes",
        type=int,
        default=0,
        metavar="N",
        help="spread the client threads over N child processes (0: threads here)",
    )
    s.add_argument("--listeners", type=int, default=4, metavar="N")
    s.add_argument("--workers", type=int, default=4, metavar="N", help="echo worker threads")
    s.add_argument(
        "--free-probability",
        type=float,
        default=0.002,
        metavar="P",
        help="chance that an API operation frees a listener and makes another",
    )
    s.add_argument("--seed", type=int, default=0)
    s.add_argument(
        "--switch-interval",
        type=float,
        default=DEFAULT_SWITCH_INTERVAL,
        metavar="S",
        help="sys.setswitchinterval on GIL builds (0: leave it alone)",
    )
    s.add_argument("--deadlock-timeout", type=float, default=DEADLOCK_TIMEOUT, metavar="S")
    s.add_argument("--client-timeout", type=float, default=CLIENT_IO_TIMEOUT, metavar="S")
    o = p.add_argument_group("output")
    o.add_argument(
        "--json", type=Path, default=None, metavar="PATH", help="write the JSON report here"
    )
    o.add_argument(
        "--live",
        choices=["auto", "rich", "plain"],
        default="auto",
        help="live display: rich on a terminal, plain lines otherwise",
    )
    o.add_argument(
        "--progress-interval",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds between plain progress lines",
    )
    if _lock_debug_available():
        o.add_argument(
            "--lock-debug",
            action="store_true",
            help="check every lock with threadlisten.debug (slower)",
        )
    return p


def config_from_args(args: argparse.Namespace) -> StressConfig:
    """Return the ``StressConfig`` for parsed *args*."""
    duration = args.duration
    if duration is None and args.operations is None and args.connections is None:
        duration = 30.0
    return StressConfig(
        duration=duration,
        operations=args.operations,
        connections=args.connections,
        time_limit=args.time_limit,
        api_threads=args.api_threads,
        client_threads=args.clients,
        client_processes=args.client_processes,
        listeners=args.listeners,
        workers=args.workers,
        free_probability=args.free_probability,
        seed=args.seed,
        switch_interval=args.switch_interval or None,
        lock_debug=getattr(args, "lock_debug", False),
        json_path=args.json,
        live=args.live,
        progress_interval=args.progress_interval,
        deadlock_timeout=args.deadlock_timeout,
        client_timeout=args.client_timeout,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m stress`` with *argv*; return the exit code (see the module docstring)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args)
        code, _ = run(cfg)
    except ValueError as exc:
        parser.error(str(exc))  # exits with 2
    return code
