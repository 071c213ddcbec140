"""Run each mode over its rows in interleaved rounds and shape its results.

Each ``run_<mode>`` takes the ``Context`` and returns that mode's part of
the results dict (JSON-ready).  ``Settings`` holds every size and duration;
``FULL`` and ``QUICK`` are the two presets of ``run.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tlbench import burst, cbuild, control, memory, steady
from tlbench.burst import BurstResult, burst_round
from tlbench.latency import LatencyResult, latency_round
from tlbench.log import Log
from tlbench.machine import Cores
from tlbench.peers import BY_KEY, Peer
from tlbench.procs import BENCH_DIR, REPO_ROOT, Launcher
from tlbench.report import add_ratios, summary_dict
from tlbench.reuseport import ReuseportResult, reuseport_round
from tlbench.rounds import interleave
from tlbench.steady import SteadyResult, Window, steady_round


@dataclass(frozen=True)
class Settings:
    """Sizes, durations (seconds) and round counts of every mode."""

    burst: int
    burst_rounds: int
    burst_max_window: float | None
    setup_rounds: int
    steady: Window
    steady_rounds: int
    latency_rate: float
    latency_count: int
    latency_rounds: int
    control: Window
    control_rounds: int
    control_threads: tuple[int, ...]
    control_paced: tuple[int, ...]
    reuse_burst: int
    reuse_rounds: int
    memory_count: int
    memory_rounds: int
    profile_burst: int
    profile_rounds: int


#: The full run (about ten minutes on a 2-core machine).  Burst: 4,000
#: connections fit a default somaxconn of 4096 and take 50-400 ms to drain,
#: long against the queue watcher's ~0.3 ms resolution; 11 rounds give a
#: median that a few disturbed rounds cannot move (on the project's VM whole
#: rounds run 1.5x slower now and then, whatever the server: see
#: docs/performance.md).  Latency: 2,000 connections/s
#: is moderate for every peer (the slowest drains 8,000/s) and 4,000 samples
#: put 40 beyond p99.
FULL = Settings(
    burst=4000,
    burst_rounds=11,
    burst_max_window=burst.MAX_START_WINDOW,
    setup_rounds=3,
    steady=Window(warmup=0.5, measure=1.5),
    steady_rounds=5,
    latency_rate=2000.0,
    latency_count=4000,
    latency_rounds=3,
    control=Window(warmup=0.5, measure=1.5),
    control_rounds=3,
    control_threads=control.THREAD_COUNTS,
    control_paced=control.PACED_THREADS,
    reuse_burst=4000,
    reuse_rounds=11,
    memory_count=1000,
    memory_rounds=3,
    profile_burst=2000,
    profile_rounds=5,
)

#: CI's smoke run: every mode once, small, for correctness, not figures.
QUICK = Settings(
    burst=500,
    burst_rounds=1,
    burst_max_window=None,  # a smoke run: any timing will do
    setup_rounds=1,
    steady=Window(warmup=0.1, measure=0.2),
    steady_rounds=1,
    latency_rate=1000.0,
    latency_count=150,
    latency_rounds=1,
    control=Window(warmup=0.1, measure=0.2),
    control_rounds=1,
    control_threads=(0, 2),
    control_paced=(),
    reuse_burst=500,
    reuse_rounds=1,
    memory_count=50,
    memory_rounds=1,
    profile_burst=300,
    profile_rounds=1,
)


@dataclass
class Context:
    """What every mode needs: where to run, what, how long, and how to say so."""

    launcher: Launcher
    cores: Cores
    settings: Settings
    log: Log
    peers: list[Peer]
    loadgen: Path | None
    notes: dict[str, str] = field(default_factory=dict)


def _row(peer: Peer) -> dict[str, Any]:
    return {"label": peer.label, "diagnostic": peer.diagnostic, "note": peer.note}


def run_burst(ctx: Context) -> dict[str, Any]:
    """Burst mode over every row: each server's set-up CPU first, then the drains."""
    s = ctx.settings
    keys = [p.key for p in ctx.peers]
    setups = interleave(
        keys,
        s.setup_rounds,
        lambda key: burst.measure_setup(ctx.launcher, BY_KEY[key], ctx.cores),
        ctx.log,
        "set-up",
        lambda k, r: "unknown" if r is None else f"{r * 1e3:.2f} ms CPU",
    )
    setup = {key: burst.median_setup(setups.results.get(key, [])) for key in keys}
    collected = interleave(
        keys,
        s.burst_rounds,
        lambda key: burst_round(
            ctx.launcher, BY_KEY[key], ctx.cores, s.burst, setup[key], s.burst_max_window
        ),
        ctx.log,
        "burst",
        lambda k, r: (
            f"{r.rate:,.0f}/s, per CPU-second {r.cpu_rate or 0:,.0f}/s, busy {r.busy or 0:.2f}"
        ),
    )
    rows: dict[str, dict[str, Any]] = {}
    for peer in ctx.peers:
        results: list[BurstResult] = collected.results.get(peer.key, [])
        row = _row(peer)
        row["rounds"] = [asdict(r) for r in results]
        row["rate"] = summary_dict(r.rate for r in results)
        row["cpu_rate"] = summary_dict(r.cpu_rate for r in results if r.cpu_rate)
        row["busy"] = summary_dict(r.busy for r in results if r.busy)
        row["accept_rate"] = summary_dict(r.accept_rate for r in results if r.accept_rate)
        row["setup_cpu_ms"] = setup[peer.key] * 1e3
        row["errors"] = collected.errors.get(peer.key, []) + setups.errors.get(peer.key, [])
        rows[peer.key] = row
    add_ratios(rows)
    add_ratios(rows, "cpu_rate", "cpu_ratios")
    return {"burst": s.burst, "rounds": s.burst_rounds, "rows": rows}


def run_steady(ctx: Context) -> dict[str, Any]:
    """Steady mode over every row."""
    assert ctx.loadgen is not None
    s = ctx.settings
    loadgen = ctx.loadgen
    collected = interleave(
        [p.key for p in ctx.peers],
        s.steady_rounds,
        lambda key: steady_round(ctx.launcher, BY_KEY[key], ctx.cores, loadgen, s.steady),
        ctx.log,
        "steady",
        lambda k, r: f"{r.rate:,.0f}/s, {r.cpu_us or 0:.1f} us/conn, busy {r.server_busy:.2f}",
    )
    rows: dict[str, dict[str, Any]] = {}
    for peer in ctx.peers:
        results: list[SteadyResult] = collected.results.get(peer.key, [])
        row = _row(peer)
        row["rounds"] = [asdict(r) for r in results]
        row["rate"] = summary_dict(r.rate for r in results)
        row["cpu_us"] = summary_dict(r.cpu_us for r in results if r.cpu_us is not None)
        row["server_busy"] = summary_dict(r.server_busy for r in results)
        row["generator_busy"] = summary_dict(
            r.generator_busy for r in results if r.generator_busy is not None
        )
        row["errors"] = collected.errors.get(peer.key, [])
        rows[peer.key] = row
    add_ratios(rows)
    add_ratios(rows, "cpu_us", "cpu_ratios")
    return {
        "threads": steady.THREADS,
        "inflight": steady.INFLIGHT,
        "window": s.steady.measure,
        "warmup": s.steady.warmup,
        "rounds": s.steady_rounds,
        "rows": rows,
    }


def run_latency(ctx: Context) -> dict[str, Any]:
    """Latency over every row."""
    assert ctx.loadgen is not None
    s = ctx.settings
    loadgen = ctx.loadgen
    collected = interleave(
        [p.key for p in ctx.peers],
        s.latency_rounds,
        lambda key: latency_round(
            ctx.launcher, BY_KEY[key], ctx.cores, loadgen, s.latency_rate, s.latency_count
        ),
        ctx.log,
        "latency",
        lambda k, r: f"p50 {r.p50_us:.0f} us, p99 {r.p99_us:.0f} us",
    )
    rows: dict[str, dict[str, Any]] = {}
    for peer in ctx.peers:
        results: list[LatencyResult] = collected.results.get(peer.key, [])
        row = _row(peer)
        row["rounds"] = [asdict(r) for r in results]
        for name in ("p50_us", "p99_us", "max_us"):
            row[name] = summary_dict(getattr(r, name) for r in results)
        row["errors"] = collected.errors.get(peer.key, [])
        rows[peer.key] = row
    return {
        "rate": s.latency_rate,
        "count": s.latency_count,
        "rounds": s.latency_rounds,
        "rows": rows,
    }


def run_control(ctx: Context, peer: Peer) -> dict[str, Any]:
    """Cross-thread control on the THREADSAFE listener *peer*."""
    assert ctx.loadgen is not None
    s = ctx.settings
    loadgen = ctx.loadgen
    cases = {c.key: c for c in control.cases(s.control_threads, s.control_paced)}
    collected = interleave(
        list(cases),
        s.control_rounds,
        lambda key: control.control_round(
            ctx.launcher, peer, ctx.cores, loadgen, s.control, cases[key]
        ),
        ctx.log,
        "control",
        lambda k, r: f"{r.extras.get('ops', 0):,.0f} calls/s, {r.rate:,.0f} accepts/s",
    )
    rows: dict[str, dict[str, Any]] = {}
    for key in cases:
        results: list[SteadyResult] = collected.results.get(key, [])
        rows[key] = {
            "rounds": [asdict(r) for r in results],
            "ops": summary_dict(r.extras.get("ops", 0.0) for r in results),
            "rate": summary_dict(r.rate for r in results),
            "cpu_us": summary_dict(r.cpu_us for r in results if r.cpu_us is not None),
            "errors": collected.errors.get(key, []),
        }
    base = rows.get("none/0", {}).get("rate")
    for row in rows.values():
        mine = row.get("rate")
        row["rate_vs_none"] = mine["median"] / base["median"] if mine and base else None
    return {"peer": peer.key, "rounds": s.control_rounds, "window": s.control.measure, "rows": rows}


def run_reuseport(ctx: Context, peer: Peer) -> dict[str, Any]:
    """REUSEABLE_PORT with 1 and 2 processes of *peer*."""
    s = ctx.settings
    collected = interleave(
        [1, 2],
        s.reuse_rounds,
        lambda n: reuseport_round(ctx.launcher, peer, ctx.cores, n, s.reuse_burst),
        ctx.log,
        "reuseport",
        lambda k, r: f"{r.rate:,.0f}/s split {r.split}",
    )
    rows: dict[str, dict[str, Any]] = {}
    for n in (1, 2):
        results: list[ReuseportResult] = collected.results.get(n, [])
        rows[str(n)] = {
            "rounds": [asdict(r) for r in results],
            "rate": summary_dict(r.rate for r in results),
            "errors": collected.errors.get(n, []),
        }
    one = rows["1"]["rate"]
    for row in rows.values():
        row["vs_one"] = row["rate"]["median"] / one["median"] if row["rate"] and one else None
    return {
        "peer": peer.key,
        "burst": s.reuse_burst,
        "rounds": s.reuse_rounds,
        "pinned": ctx.cores.pinned,
        "rows": rows,
    }


def run_memory(ctx: Context) -> dict[str, Any]:
    """Memory per idle listener."""
    s = ctx.settings
    keys = [(kind, what) for kind in memory.KINDS for what in memory.WHATS]
    collected = interleave(
        keys,
        s.memory_rounds,
        lambda kw: memory.probe(kw[0], s.memory_count, kw[1]),
        ctx.log,
        "memory",
        lambda k, r: f"{r:,.0f} B",
    )
    rows: dict[str, dict[str, Any]] = {}
    for kind, what in keys:
        values = collected.results.get((kind, what), [])
        summary = summary_dict(values)
        rows.setdefault(kind, {})[what] = summary["median"] if summary else None
    return {"count": s.memory_count, "rounds": s.memory_rounds, "rows": rows}


def run_profile(ctx: Context) -> dict[str, Any]:
    """The accept-path profile (``accept_profile``), in a fresh process."""
    s = ctx.settings
    cmd = [
        sys.executable,
        "-m",
        "tlbench.accept_profile",
        "--burst",
        str(s.profile_burst),
        "--rounds",
        str(s.profile_rounds),
    ]
    try:
        lib = cbuild.build(
            cbuild.ALLOC_COUNTER,
            shared=True,
            extra_flags=("-I", sysconfig.get_paths()["include"]),
        )
        cmd += ["--alloc-lib", str(lib)]
    except cbuild.BuildError as exc:
        ctx.notes["profile"] = f"allocation counts left out: {exc}"
    if ctx.loadgen is not None:
        cmd += ["--loadgen", str(ctx.loadgen)]
    env = dict(os.environ)
    env.pop("THREADLISTEN_LOCK_DEBUG", None)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), str(BENCH_DIR)])
    ctx.log("profile: accept path, in-process")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=BENCH_DIR)
    if proc.returncode != 0:
        raise RuntimeError(f"accept_profile failed: {proc.stderr.strip()[-500:]}")
    out: dict[str, Any] = json.loads(proc.stdout)
    points = out["points"]
    # What the seam costs production, and what it costs when every point is made.
    out["points"]["cost_ns_per_connection"] = (
        points["production_per_connection"] * points["point_call_ns"]
    )
    out["points"]["cost_ns_per_connection_all_points"] = (
        points["total_per_connection"] * points["point_call_ns"]
    )
    return out
