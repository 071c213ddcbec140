"""threadlisten against its peers: accept throughput, latency, control cost, memory.

One command runs every measurement of issue 6 and writes the results:

    python benchmarks/run.py --peers install     # the full run (~10 min on 2 cores)
    python benchmarks/run.py --quick             # CI's smoke run (~20 s; no figure asserted)

Each server (threadlisten, the selectors floor, asyncio, uvloop, tornado,
gevent, Twisted, trio, socketserver, C epoll and C libevent) is its own
process, pinned to one core; the harness and the C load generator take
another.  Rows are measured in interleaved rounds and reported as medians
with min and max, with ratios against the C limit, the Python floor and
asyncio.  Modes (``--modes``): ``burst`` (fill the accept queue, then time
the drain: the server alone), ``steady`` (the C load generator for a fixed
time), ``latency`` (connect-to-callback at a fixed rate), ``control``
(threads calling enable/disable/set_cb while accepting), ``reuseport``
(REUSEABLE_PORT over 2 processes against 1), ``memory`` (per idle listener)
and ``profile`` (the accept path: batches, allocations, locks, the seam).
The package ``tlbench`` next to this file holds the harness; its modules
say how each figure is made.

Output: a table on the terminal, and under ``--out`` (default
``benchmarks/results``; a temporary directory for ``--quick``)
``bench.json`` (everything, with versions and the machine), ``bench.md``
(the tables and the command) and ``bench.png`` (the chart; needs
matplotlib, the ``bench`` extra).

Needs: Linux, loopback, a C compiler (``cc``) for the C servers and the load
generator, libevent's headers for the libevent row (``apt-get install
libevent-dev``; the row is skipped with that hint when they are missing),
and for the third-party peers a venv that ``--peers install`` makes in
``benchmarks/.peers-venv`` from ``benchmarks/peers-requirements.txt``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from tlbench import cbuild, chart, machine, peers_env, report, suite
from tlbench.log import Log
from tlbench.peers import BY_KEY, PEERS, QUICK_KEYS, Peer
from tlbench.procs import REPO_ROOT, Launcher

MODES = ("burst", "steady", "latency", "control", "reuseport", "memory", "profile")
#: Modes that need the C load generator.
LOADGEN_MODES = frozenset({"steady", "latency", "control"})
#: The results' file names (``.json``, ``.md``, ``.png``).
STEM = "bench"
DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line (see ``--help``)."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Modes: " + ", ".join(MODES),
    )
    parser.add_argument(
        "--quick", action="store_true", help="CI smoke run: small, one round, no third-party peers"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="results directory (default benchmarks/results; --quick: a temp dir)",
    )
    parser.add_argument(
        "--modes", default=",".join(MODES), help="comma-separated modes to run (default: all)"
    )
    parser.add_argument(
        "--only", help="comma-separated peer keys to run: " + ", ".join(p.key for p in PEERS)
    )
    parser.add_argument(
        "--peers",
        choices=("auto", "install", "skip"),
        default="auto",
        help="third-party peers: use the venv if it exists (auto), make/update "
        "it (install), or leave them out (skip)",
    )
    parser.add_argument(
        "--scratch-core",
        type=Path,
        help="a directory holding a modified threadlisten package: adds the "
        "'scratch' rows, measured in the same interleaved rounds",
    )
    parser.add_argument(
        "--stem", default=STEM, help=f"results file names: STEM.json, .md, .png (default {STEM})"
    )
    parser.add_argument("--rounds", type=int, help="override every mode's round count")
    parser.add_argument("--burst", type=int, help="override the burst size (<= somaxconn)")
    parser.add_argument("--no-chart", action="store_true", help="do not draw the PNG")
    parser.add_argument(
        "--from-json",
        type=Path,
        help="measure nothing: redo the tables, Markdown and chart of a results file "
        "(written next to it unless --out)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = set(args.modes) - set(MODES)
    if unknown:
        parser.error(f"unknown mode(s): {', '.join(sorted(unknown))}")
    if args.only:
        args.only = [k.strip() for k in args.only.split(",") if k.strip()]
        bad = [k for k in args.only if k not in BY_KEY]
        if bad:
            parser.error(f"unknown peer(s): {', '.join(bad)}")
    return args


def settings_for(args: argparse.Namespace, somaxconn: int | None) -> suite.Settings:
    """Return the preset, with the command line's overrides and the burst
    clipped to what the kernel's accept queue can hold."""
    s = suite.QUICK if args.quick else suite.FULL
    if args.rounds:
        r = args.rounds
        s = replace(
            s,
            burst_rounds=r,
            setup_rounds=r,
            steady_rounds=r,
            latency_rounds=r,
            control_rounds=r,
            reuse_rounds=r,
            memory_rounds=r,
            profile_rounds=r,
        )
    if args.burst:
        s = replace(s, burst=args.burst, reuse_burst=args.burst)
    if somaxconn:
        s = replace(s, burst=min(s.burst, somaxconn), reuse_burst=min(s.reuse_burst, somaxconn))
    return s


def choose_peers(args: argparse.Namespace) -> list[Peer]:
    """The rows asked for: ``--only``, the quick set, or every peer (scratch
    rows only with ``--scratch-core``)."""
    if args.only:
        return [BY_KEY[k] for k in args.only]
    if args.quick:
        return [BY_KEY[k] for k in QUICK_KEYS]
    return [p for p in PEERS if not p.scratch or args.scratch_core]


def threadlisten_version() -> str:
    """The version of the threadlisten in this tree."""
    try:
        import threadlisten
    except ImportError:
        sys.path.insert(0, str(REPO_ROOT))
        import threadlisten
    return str(threadlisten.__version__)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks; return the exit status (0 unless the harness itself broke)."""
    args = parse_args(argv)
    log = Log(args.quiet)
    if args.from_json:
        loaded: dict[str, Any] = json.loads(args.from_json.read_text())
        if loaded.get("burst"):
            loaded["targets"] = report.check_targets(loaded["burst"]["rows"])
        out_dir = args.out or args.from_json.parent
        return _write_out(loaded, out_dir, args.from_json.stem, args.no_chart, log)
    started = time.monotonic()
    cores = machine.choose_cores()
    machine.pin(0, cores.client)  # the harness stays off the server's core
    described = machine.describe(cores)
    somaxconn = described.get("somaxconn")
    settings = settings_for(args, somaxconn if isinstance(somaxconn, int) else None)
    load_before = machine.loadavg()
    if load_before and load_before[0] > 0.5 * (described["cpus"] or 1):  # type: ignore[operator]
        log(f"note: load average {load_before[0]:.2f}: other work is running, expect noise")
    if not cores.pinned:
        log("note: fewer than 2 usable cores: nothing is pinned")

    if args.peers == "install":
        peers_env.install(log)
    installed = peers_env.probe() if args.peers != "skip" else {}
    launcher = Launcher(args.scratch_core.resolve() if args.scratch_core else None)
    rows: list[Peer] = []
    skipped: dict[str, str] = {}
    for peer in choose_peers(args):
        why = "--peers skip" if peer.needs and args.peers == "skip" else None
        why = why or launcher.unavailable(peer, installed)
        if why:
            skipped[peer.key] = why
            log(f"skipping {peer.key}: {why}")
        else:
            rows.append(peer)
    loadgen: Path | None = None
    try:
        loadgen = cbuild.build(cbuild.LOADGEN)
    except cbuild.BuildError as exc:
        for mode in LOADGEN_MODES & set(args.modes):
            skipped[f"mode {mode}"] = f"no load generator: {exc}"
        log(f"skipping {', '.join(sorted(LOADGEN_MODES))}: {exc}")

    ctx = suite.Context(launcher, cores, settings, log, rows, loadgen)
    results: dict[str, Any] = {
        "command": " ".join(
            ["python", "benchmarks/run.py"]
            + [shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)]
        ),
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": described,
        "settings": asdict(settings),
        "skipped": skipped,
    }
    # control and reuseport are threadlisten's own: always its THREADSAFE listener.
    tl = BY_KEY["tl-threadsafe"]
    for mode in args.modes:
        if mode in LOADGEN_MODES and loadgen is None:
            continue
        if mode == "burst":
            results["burst"] = suite.run_burst(ctx)
            results["targets"] = report.check_targets(results["burst"]["rows"])
        elif mode == "steady":
            results["steady"] = suite.run_steady(ctx)
        elif mode == "latency":
            results["latency"] = suite.run_latency(ctx)
        elif mode == "control":
            results["control"] = suite.run_control(ctx, tl)
        elif mode == "reuseport":
            results["reuseport"] = suite.run_reuseport(ctx, tl)
        elif mode == "memory":
            results["memory"] = suite.run_memory(ctx)
        elif mode == "profile":
            results["profile"] = suite.run_profile(ctx)
    results["notes"] = ctx.notes
    results["load"] = {"before": load_before, "after": machine.loadavg()}
    results["versions"] = {
        "threadlisten": threadlisten_version(),
        "peers": {k: v for k, v in installed.items() if k != "python"},
        "peers_venv_python": installed.get("python"),
        "servers": launcher.infos,
        "c_compiler": cbuild.compiler(),
        "git": machine.git_state(str(REPO_ROOT)),
    }
    results["duration_s"] = time.monotonic() - started

    out_dir = args.out or (
        Path(tempfile.mkdtemp(prefix="tlbench-quick-")) if args.quick else DEFAULT_OUT
    )
    return _write_out(results, out_dir, args.stem, args.no_chart, log)


def _write_out(results: dict[str, Any], out_dir: Path, stem: str, no_chart: bool, log: Log) -> int:
    written = report.write(results, out_dir, stem)
    if not no_chart and any(m in results for m in ("burst", "steady", "latency")):
        missing = chart.available()
        if missing:
            log(f"no chart: {missing}")
        else:
            written.append(chart.draw(results, out_dir / f"{stem}.png"))
    report.print_tables(results)
    for path in written:
        log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
