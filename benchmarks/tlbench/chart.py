"""The PNG bar chart of the results (matplotlib, the ``bench`` extra).

Panels from the results dict: burst throughput by the wall clock and per
CPU-second of the server (median bars, min-max whiskers, the floor and the C
limit as lines), steady-mode server CPU per connection, and
connect-to-callback latency p99.  The machine, the
versions and the command are written under the title.
"""

from __future__ import annotations

import importlib
import textwrap
from pathlib import Path
from typing import Any

from tlbench.report import label

#: Characters per line of the chart's heading.
TITLE_WIDTH = 110

#: Bar colours: threadlisten stands out, diagnostics are pale.
COLOURS = {
    "threadlisten": "#d62728",
    "c": "#555555",
    "peer": "#1f77b4",
    "diagnostic": "#c7c7c7",
}


def available() -> str | None:
    """Return None if matplotlib can be imported, else how to get it."""
    try:
        importlib.import_module("matplotlib")
    except ImportError:
        return "matplotlib is missing: pip install -e '.[bench]' (or pip install matplotlib)"
    return None


def _colour(key: str, row: dict[str, Any]) -> str:
    if row.get("diagnostic"):
        return COLOURS["diagnostic"]
    if key.startswith("tl-"):
        return COLOURS["threadlisten"]
    if key.startswith("c-"):
        return COLOURS["c"]
    return COLOURS["peer"]


def matplotlib_ticker() -> Any:
    """``matplotlib.ticker`` (imported only when drawing)."""
    return importlib.import_module("matplotlib.ticker")


def _label(value: float) -> str:
    return f" {value:,.0f}" if value >= 100 else f" {value:.1f}"


def _bars(ax: Any, rows: dict[str, dict[str, Any]], field: str, xlabel: str) -> list[str]:
    """Horizontal bars of *field*'s medians, min-max whiskers, the median
    written past the whisker; sorted so the best is on top."""
    keys = [k for k, r in rows.items() if r.get(field)]
    keys.sort(key=lambda k: rows[k][field]["median"])
    medians = [rows[k][field]["median"] for k in keys]
    lo = [rows[k][field]["median"] - rows[k][field]["min"] for k in keys]
    hi = [rows[k][field]["max"] - rows[k][field]["median"] for k in keys]
    ax.barh(
        range(len(keys)),
        medians,
        xerr=[lo, hi],
        color=[_colour(k, rows[k]) for k in keys],
        error_kw={"elinewidth": 0.8, "capsize": 2, "ecolor": "#444444"},
    )
    ax.set_yticks(range(len(keys)))
    ax.set_yticklabels([label(k) for k in keys], fontsize=8)
    ax.set_xlabel(xlabel)
    ax.xaxis.set_major_formatter(matplotlib_ticker().FuncFormatter(lambda x, _pos: f"{x:,.0f}"))
    for i, k in enumerate(keys):
        ax.text(rows[k][field]["max"], i, _label(medians[i]), va="center", fontsize=7)
    ax.set_xlim(0, max(rows[k][field]["max"] for k in keys) * 1.15)
    return keys


def _latency_bars(ax: Any, rows: dict[str, dict[str, Any]]) -> None:
    """p50 and p99 (medians of the rounds) side by side, on a log scale:
    one slow round of one server must not flatten every other bar."""
    keys = [k for k, r in rows.items() if r.get("p99_us") and r.get("p50_us")]
    keys.sort(key=lambda k: -rows[k]["p99_us"]["median"])
    p50 = [rows[k]["p50_us"]["median"] for k in keys]
    p99 = [rows[k]["p99_us"]["median"] for k in keys]
    y = range(len(keys))
    colours = [_colour(k, rows[k]) for k in keys]
    ax.barh([i + 0.2 for i in y], p99, height=0.4, color=colours, label="p99")
    ax.barh([i - 0.2 for i in y], p50, height=0.4, color=colours, alpha=0.45, label="p50")
    ax.set_xscale("log")
    ax.set_yticks(list(y))
    ax.set_yticklabels([label(k) for k in keys], fontsize=8)
    ax.set_xlabel("microseconds from connect() to the callback (log scale; lower is better)")
    for i in y:
        ax.text(p99[i], i + 0.2, _label(p99[i]), va="center", fontsize=6)
        ax.text(p50[i], i - 0.2, _label(p50[i]), va="center", fontsize=6)
    ax.set_xlim(right=max(p99) * 2.5)  # room for the labels on the log scale


def draw(results: dict[str, Any], path: Path) -> Path:
    """Draw the chart of *results* into *path* (PNG) and return *path*.

    Raises:
        ImportError: matplotlib is not installed (see ``available``).
    """
    matplotlib: Any = importlib.import_module("matplotlib")
    matplotlib.use("Agg")
    plt: Any = importlib.import_module("matplotlib.pyplot")
    panels = []
    if results.get("burst"):
        panels.append(
            (
                "burst",
                "rate",
                "connections/s (higher is better)",
                "Burst, wall clock: a queued burst drained (median, min-max)",
            )
        )
        panels.append(
            (
                "burst",
                "cpu_rate",
                "connections per CPU-second (higher is better)",
                "Burst, per CPU-second of the server: unmoved by other work on its core",
            )
        )
    if results.get("steady"):
        panels.append(
            (
                "steady",
                "cpu_us",
                "server CPU microseconds per connection (lower is better)",
                "Steady load: what each connection costs the server",
            )
        )
    if results.get("latency"):
        panels.append(
            (
                "latency",
                "p99_us",
                "",
                f"Latency at {results['latency']['rate']:,.0f} connections/s: p50 (pale) "
                "and p99 (medians of the rounds)",
            )
        )
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 3.0 + 2.6 * len(panels)), squeeze=False)
    for ax, (mode, field, xlabel, title) in zip(axes[:, 0], panels, strict=True):
        rows = results[mode]["rows"]
        if mode == "latency":
            _latency_bars(ax, rows)
        else:
            _bars(ax, rows, field, xlabel)
        if mode == "burst":
            for ref, style in (("selectors", ":"), ("c-epoll", "--")):
                if rows.get(ref, {}).get(field):
                    ax.axvline(rows[ref][field]["median"], color="k", ls=style, lw=0.8)
        ax.set_title(title, fontsize=10)
    m = results["machine"]
    v = results["versions"]
    peers = ", ".join(f"{k} {val}" for k, val in sorted(v.get("peers", {}).items()) if val)
    heading = [
        f"threadlisten {v['threadlisten']} vs peers: Python {m['python']}, {m['cpu']}, "
        f"{m['cpus']} CPUs, {results['started']}",
        peers,
        *textwrap.wrap(results["command"], TITLE_WIDTH),
    ]
    fig.suptitle("\n".join(heading), fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
