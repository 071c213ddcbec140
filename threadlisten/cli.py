"""The command line: ``python -m threadlisten <command>`` (or ``threadlisten <command>``).

Commands:

* ``echo``: the libevent book's echo server (``threadlisten.echo``).
* ``demo``: the showcase: one THREADSAFE listener shared by a pool of worker
  threads, with backpressure, a callback swap and a free under load
  (``threadlisten.demo``).
* ``trace``: a named scenario run with the lifecycle tracer, printed as a
  sequence diagram and drawn as a swimlane picture (``threadlisten.trace``,
  ``threadlisten._trace_scenarios``; matplotlib only for ``--out``).

Each command is one ``_add_<name>`` function that registers its sub-parser
and sets ``run`` to a function taking the parsed arguments and returning the
exit code.  The command modules are imported only when their command runs, so
``--help`` stays fast and ``rich`` is loaded only by ``demo``.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
from collections.abc import Callable

__all__ = ["build_parser", "main"]


def _port(text: str) -> int:
    """argparse type: a TCP port number, 0 (pick a free one) to 65535."""
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range 0-65535: {value}")
    return value


def _positive_int(text: str) -> int:
    """argparse type: an int >= 1."""
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1: {value}")
    return value


def _seconds(text: str) -> float:
    """argparse type: a finite number of seconds >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0: {text}")
    return value


def _fraction(text: str) -> float:
    """argparse type: a number in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1]: {text}")
    return value


# ------------------------------------------------------------------ echo


def _run_echo(args: argparse.Namespace) -> int:
    from threadlisten.echo import run_echo

    return run_echo(args.host, args.port)


def _add_echo(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from threadlisten.echo import DEFAULT_HOST, DEFAULT_PORT

    p = subparsers.add_parser(
        "echo",
        help="run the libevent book's echo server",
        description=(
            "The echo server of the libevent book, on threadlisten: every "
            "connection gets back what it sends.  Prints 'listening on HOST:PORT' "
            "when ready; Ctrl-C (SIGINT) or SIGTERM shuts it down cleanly. "
            "Try: printf hello | nc -q1 127.0.0.1 9876"
        ),
    )
    p.add_argument(
        "--host", default=DEFAULT_HOST, help="address to bind (default: %(default)s, loopback)"
    )
    p.add_argument(
        "--port",
        type=_port,
        default=DEFAULT_PORT,
        help="TCP port; 0 picks a free one (default: %(default)s)",
    )
    p.set_defaults(run=_run_echo)


# ------------------------------------------------------------------ demo


def _run_demo(args: argparse.Namespace) -> int:
    from threadlisten.demo import DemoConfig, run_demo

    config = DemoConfig(
        connections=args.connections,
        clients=args.clients,
        workers=args.workers,
        queue_size=args.queue,
        burst=args.burst,
        payload_size=args.payload,
        duration=args.duration,
        deadline=args.deadline,
        free_at=args.free_at,
        seed=args.seed,
    )
    return run_demo(config, plain=args.plain)


def _add_demo(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from threadlisten.demo import DemoConfig

    d = DemoConfig()
    p = subparsers.add_parser(
        "demo",
        help="the showcase: one listener, a worker pool, backpressure, set_cb, free under load",
        description=(
            "One THREADSAFE listener on 127.0.0.1 feeds a pool of worker threads "
            "through a bounded queue.  When the queue is full the accept callback "
            "disables the listener; a worker re-enables it once the queue drains. "
            "Midway the main thread swaps the callback with set_cb; near the end it "
            "frees the listener while clients are still connecting.  Real TCP "
            "clients check every echo byte for byte.  Exit status 0 only if every "
            "accepted connection was echoed and verified, nothing unexpected "
            "happened, and no descriptor or thread leaked."
        ),
    )
    p.add_argument(
        "--connections",
        type=_positive_int,
        default=d.connections,
        help="connections the clients make in total (default: %(default)s)",
    )
    p.add_argument(
        "--clients",
        type=_positive_int,
        default=d.clients,
        help="client threads (default: %(default)s)",
    )
    p.add_argument(
        "--workers",
        type=_positive_int,
        default=d.workers,
        help="worker threads serving accepted connections (default: %(default)s)",
    )
    p.add_argument(
        "--queue",
        type=_positive_int,
        default=d.queue_size,
        help="bounded queue between the accept callback and the workers (default: %(default)s)",
    )
    p.add_argument(
        "--burst",
        type=_positive_int,
        default=d.burst,
        help="connections each client opens at once, per wave (default: %(default)s)",
    )
    p.add_argument(
        "--payload",
        type=_positive_int,
        default=d.payload_size,
        help="bytes each connection sends and gets back, at least 8 (default: %(default)s)",
    )
    p.add_argument(
        "--duration",
        type=_seconds,
        default=d.duration,
        help="seconds over which the clients spread their waves; 0: as fast as "
        "possible (default: %(default)s)",
    )
    p.add_argument(
        "--deadline",
        type=_seconds,
        default=d.deadline,
        help="hard bound on the whole run, in seconds (default: %(default)s)",
    )
    p.add_argument(
        "--free-at",
        type=_fraction,
        default=d.free_at,
        help="free the listener once this fraction of the connections has been "
        "accepted; later ones are refused (default: %(default)s)",
    )
    p.add_argument("--seed", type=int, default=d.seed, help="payload RNG seed (default: random)")
    p.add_argument(
        "--plain",
        action="store_true",
        help="plain text progress and summary, even when rich is installed",
    )
    p.set_defaults(run=_run_demo)


# ------------------------------------------------------------------ trace

#: The picture formats ``trace --out`` writes, by file extension.
_FIGURE_SUFFIXES = (".png", ".svg")


def _figure_path(text: str) -> str:
    """argparse type: a file name ending in .png or .svg."""
    if not text.lower().endswith(_FIGURE_SUFFIXES):
        raise argparse.ArgumentTypeError(f"must end in .png or .svg: {text!r}")
    return text


def _stream_takes(stream: object, text: str) -> bool:
    """Whether *text* can be written to *stream* in its encoding."""
    encoding = getattr(stream, "encoding", None) or "ascii"
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def _run_trace(args: argparse.Namespace) -> int:
    from threadlisten._trace_scenarios import ScenarioError, run_scenario
    from threadlisten._trace_text import GLYPHS, render_text

    # Checked before running anything, so that a missing extra fails fast.
    if args.out is not None and importlib.util.find_spec("matplotlib") is None:
        print(
            "trace: --out needs matplotlib; install it with: pip install 'threadlisten[trace]'",
            file=sys.stderr,
        )
        return 1
    try:
        result = run_scenario(args.scenario)
    except ScenarioError as exc:
        print(f"trace: {args.scenario} did not go as its story says: {exc}", file=sys.stderr)
        return 1
    ascii_only = args.ascii or not _stream_takes(sys.stdout, GLYPHS)
    print(render_text(result, ascii_only=ascii_only))
    if args.out is not None:
        from threadlisten._trace_plot import render_figure

        render_figure(result, args.out, axis=args.axis)
        print(f"wrote {args.out}")
    return 0


def _add_trace(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from threadlisten._trace_scenarios import SCENARIOS

    listing = "\n".join(f"  {s.name:<26} {s.title}" for s in SCENARIOS.values())
    p = subparsers.add_parser(
        "trace",
        help="trace a listener's lifecycle in a named scenario; print it, draw it",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Run a scenario on real loopback sockets with the lifecycle tracer on\n"
            "(threadlisten.trace), print a text sequence diagram (one column per\n"
            "thread: who holds the listener lock, who waits, the refcount), and\n"
            "with --out draw a swimlane picture (needs matplotlib: the 'trace'\n"
            "extra).  The scenarios are deterministic: every run records the same\n"
            "steps in the same order.  Exit status 1 if a scenario did not go as\n"
            "its story says.\n\nscenarios:\n" + listing
        ),
    )
    p.add_argument("scenario", choices=list(SCENARIOS), metavar="SCENARIO", help="see above")
    p.add_argument(
        "--out",
        type=_figure_path,
        default=None,
        metavar="FILE",
        help="also draw the swimlane picture to FILE (.png or .svg)",
    )
    p.add_argument(
        "--axis",
        choices=("step", "time"),
        default="step",
        help="x axis of the picture: one step per event (the same on every run) "
        "or milliseconds (default: %(default)s)",
    )
    p.add_argument(
        "--ascii", action="store_true", help="plain ASCII in the text diagram, no box drawing"
    )
    p.set_defaults(run=_run_trace)


_COMMANDS: tuple[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None], ...] = (
    _add_echo,
    _add_demo,
    _add_trace,
)


def build_parser() -> argparse.ArgumentParser:
    """Return the ``threadlisten`` argument parser with every subcommand.

    Thread-safety: any thread.
    """
    parser = argparse.ArgumentParser(
        prog="threadlisten",
        description="threadlisten: libevent's evconnlistener for Python, thread-safe.",
    )
    subparsers = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    subparsers.required = True
    for add in _COMMANDS:
        add(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: the arguments after the program name; ``sys.argv[1:]`` if None.

    Returns:
        The exit status: 0 on success, 2 for a usage error (``--help``
        returns 0), otherwise what the command returns.

    Thread-safety: the main thread (``echo`` installs signal handlers there).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else 2
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(levelname)s: %(message)s")
    run: Callable[[argparse.Namespace], int] = args.run
    return run(args)
