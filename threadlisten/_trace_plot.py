"""A trace as a swimlane picture (matplotlib, the ``trace`` extra).

For each traced run (``TracePart``): one lane per thread, with

* a solid bar while the thread holds a listener's lock (a darker, thinner
  bar inside it while it holds it again, recursively),
* a hatched bar while it is blocked on that lock, and a cross-hatched red
  bar for a modelled wait (libevent's ``event_del``),
* a thin green bar while a user callback runs,
* a grey line from a control call (``free()``, ``set_cb()`` ...) to its
  return, labelled above the lane, and markers for dispatch, accept,
  destroy, a timeout, and annotations (labelled below the lane);

and under the lanes the listener's refcount as a step line.  A deadlock's
wait-for edges are drawn as red arrows between the lanes.

The x axis is the step (each recorded event is one step, so the picture is
the same on every run of a deterministic scenario) or the time in ms.

It draws on a ``matplotlib.figure.Figure`` with no pyplot, so it never
touches the process's global backend: PNG through Agg, SVG through the SVG
backend, chosen by the file's extension.  Any thread.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable, Sequence
from typing import Any

import matplotlib
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from threadlisten._trace_layout import Span, display_thread, lanes, refcount_steps, spans
from threadlisten._trace_scenarios import ScenarioResult, TracePart
from threadlisten.trace import TraceEvent

__all__ = ["AXES", "render_figure"]

#: The x axes ``render_figure`` can draw.
AXES = ("step", "time")

#: Output resolution of PNG files, dots per inch.
DPI = 110

#: Inches per step on the step axis, and the bounds of the figure's width.
_INCH_PER_STEP = 0.3
_MIN_WIDTH, _MAX_WIDTH = 10.0, 22.0

_COLORS = {
    "lock": "#4a7bd0",
    "lock.nested": "#1f3f7a",
    "lock.wait": "#e8891c",
    "wait": "#c62828",
    "callback": "#2e9e5b",
    "call": "#606060",
    "refcount": "#6a3d9a",
}

# Vertical layout inside a lane (lane centre at y; y grows downwards).
_BAR = 0.42  # height of a lock bar and of a wait bar
_NESTED = 0.18
_CALLBACK_Y, _CALLBACK_H = 0.29, 0.12
_CALL_Y = -0.33  # the call line, above the bar
_MARK_Y = 0.37  # annotations, below the callback bar
# Text placement, in inches: the gap between a marker and its label, the mean
# width of a 7.5 pt character, and the figure's width outside the axes.
_NUDGE_IN = 0.04
_CHAR_IN = 0.052
_MARGIN_IN = 1.4
# Labels drawn inside an axes: clipped to it, and left out of the layout, so
# that a long label near an edge can neither run outside the picture nor
# make the constrained layout shrink the axes around it.
_IN_AXES: dict[str, Any] = {"clip_on": True, "in_layout": False}
_CYCLE_GAP = 1.8  # lane distance in a part that shows a deadlock

_MARKERS: dict[str, tuple[str, str, float, str]] = {
    # kind: (marker, colour, size, legend text)
    "dispatched": ("v", "#7b1fa2", 8.0, "read event dispatched"),
    "accepted": ("o", "#111111", 5.0, "accept() returned a connection"),
    "destroy": ("X", "#c62828", 11.0, "destroy (last reference dropped)"),
    "lock.timeout": ("|", "#c62828", 16.0, "bounded wait gave up (watchdog)"),
    "mark": ("d", "#444444", 5.5, "annotation"),
    "loop_enter": (">", "#888888", 6.0, "starts running the loop"),
}


def _x_of(axis: str) -> Callable[[TraceEvent], float]:
    if axis == "step":
        return lambda e: float(e.seq)
    if axis == "time":
        return lambda e: e.time * 1000.0
    raise ValueError(f"axis must be one of {AXES}, not {axis!r}")


def _draw_span(ax: Axes, span: Span, y: float) -> None:
    width = max(span.end - span.start, 0.05)
    color = _COLORS[span.kind]
    if span.kind == "lock":
        ax.barh(y, width, left=span.start, height=_BAR, color=color, alpha=0.9, zorder=2)
    elif span.kind == "lock.nested":
        ax.barh(y, width, left=span.start, height=_NESTED, color=color, zorder=3)
    elif span.kind in ("lock.wait", "wait"):
        hatch = "////" if span.kind == "lock.wait" else "xxx"
        ax.barh(
            y,
            width,
            left=span.start,
            height=_BAR,
            facecolor="none",
            edgecolor=color,
            hatch=hatch,
            linewidth=1.2,
            zorder=4,
        )
        if span.kind == "wait":
            ax.text(
                span.start,
                y + _BAR / 2 + 0.05,
                span.label,
                color=color,
                fontsize=7.5,
                va="top",
                ha="left",
                zorder=6,
                **_IN_AXES,
            )
    elif span.kind == "callback":
        ax.barh(y + _CALLBACK_Y, width, left=span.start, height=_CALLBACK_H, color=color, zorder=3)
    elif span.kind == "call":
        style = "-" if span.closed else "--"
        ax.plot(
            [span.start, span.end], [y + _CALL_Y] * 2, style, color=color, linewidth=1.3, zorder=3
        )
        ax.plot([span.start], [y + _CALL_Y], "|", color=color, markersize=7, zorder=3)
        if span.closed:
            ax.plot([span.end], [y + _CALL_Y], "|", color=color, markersize=7, zorder=3)
        ax.text(
            span.start,
            y + _CALL_Y - 0.05,
            span.label,
            fontsize=8,
            color="#222222",
            va="bottom",
            ha="left",
            zorder=6,
            **_IN_AXES,
        )


def _draw_points(
    ax: Axes,
    events: Sequence[TraceEvent],
    rows: dict[str, float],
    x: Callable[[TraceEvent], float],
    per_inch: float,
) -> set[str]:
    used: set[str] = set()
    xmax = ax.get_xlim()[1]
    nudge = _NUDGE_IN * per_inch
    for e in events:
        style = _MARKERS.get(e.kind)
        if style is None:
            continue
        marker, color, size, _ = style
        y = rows[display_thread(e.thread)]
        ax.plot([x(e)], [y], marker, color=color, markersize=size, zorder=7, linestyle="none")
        used.add(e.kind)
        if e.kind not in ("mark", "lock.timeout"):
            continue
        text = e.detail if e.kind == "mark" else f"gave up after {e.value or 0:.1f} s"
        # Written rightwards unless it would run out of the axes.
        left = x(e) + nudge + len(text) * _CHAR_IN * per_inch < xmax
        if e.kind == "mark":
            ax.text(
                x(e) + (nudge if left else -nudge),
                y + _MARK_Y,
                text,
                fontsize=7.5,
                style="italic",
                color="#333333",
                va="top",
                ha="left" if left else "right",
                zorder=6,
                **_IN_AXES,
            )
        else:
            ax.text(
                x(e) + (nudge if left else -nudge),
                y - 0.08,
                text,
                fontsize=7.5,
                color=color,
                va="bottom",
                ha="left" if left else "right",
                zorder=6,
                **_IN_AXES,
            )
    return used


def _draw_cycle(ax: Axes, part: TracePart, found: list[Span], rows: dict[str, float]) -> None:
    """Red arrows for the wait-for edges, side by side where all the waits
    overlap (there the threads wait for each other), labelled to either side."""
    waits = {
        edge: [s for s in found if s.lane == edge.waiter and s.kind in ("wait", "lock.wait")]
        for edge in part.cycle
    }
    if not part.cycle or not all(waits.values()):
        return
    # Where every waiter is waiting at once: the latest start, the earliest end.
    start = max(spans_[0].start for spans_ in waits.values())
    end = min(spans_[0].end for spans_ in waits.values())
    n = len(part.cycle)
    for i, edge in enumerate(part.cycle):
        x0 = start + (end - start) * (i + 1) / (n + 1)
        y0, y1 = rows[edge.waiter], rows[edge.holder]
        direction = 1 if y1 > y0 else -1
        ax.annotate(
            "",
            xy=(x0, y1 - direction * (_BAR / 2 + 0.02)),
            xytext=(x0, y0 + direction * (_BAR / 2 + 0.02)),
            arrowprops={
                "arrowstyle": "-|>",
                "color": _COLORS["wait"],
                "linewidth": 2.0,
                "mutation_scale": 16,
            },
            zorder=8,
            **_IN_AXES,
        )
        left = i < n / 2
        ax.text(
            x0 + (-0.15 if left else 0.15),
            (y0 + y1) / 2,
            f"{edge.waiter} waits\n{edge.what}",
            color=_COLORS["wait"],
            fontsize=8.5,
            fontweight="bold",
            ha="right" if left else "left",
            va="center",
            zorder=8,
            **_IN_AXES,
        )


def _lane_gap(part: TracePart) -> float:
    """Distance between lanes: wider when a deadlock's arrows and labels go between them."""
    return _CYCLE_GAP if part.cycle else 1.0


def _draw_lanes(
    ax: Axes, part: TracePart, x: Callable[[TraceEvent], float], per_inch: float
) -> tuple[set[str], set[str]]:
    """Draw *part*'s lanes on *ax*, whose x limits are set; *per_inch* is x units per inch."""
    names = lanes(part.events)
    gap = _lane_gap(part)
    rows = {name: i * gap for i, name in enumerate(names)}
    found = spans(part.events, x)
    for span in found:
        _draw_span(ax, span, rows[span.lane])
    used = _draw_points(ax, part.events, rows, x, per_inch)
    _draw_cycle(ax, part, found, rows)
    ax.set_yticks(list(rows.values()), names, fontsize=10, fontweight="bold")
    ax.set_ylim((len(names) - 1) * gap + 0.6, -0.75)
    for y in rows.values():
        ax.axhline(y, color="#dddddd", linewidth=0.8, zorder=0)
    ax.set_title(part.title, loc="left", fontsize=11, fontweight="bold")
    ax.tick_params(axis="x", labelbottom=False)
    ax.grid(axis="x", color="#eeeeee", zorder=0)
    return {s.kind for s in found}, used


def _draw_refcount(ax: Axes, part: TracePart, x: Callable[[TraceEvent], float], axis: str) -> None:
    end = max(x(e) for e in part.events) + 0.5
    labels = sorted({e.listener for e in part.events if e.listener})
    top = 1
    for label in labels:
        steps = refcount_steps(part.events, label)
        if not steps:
            continue
        xs = [x(e) for e, _ in steps] + [end]
        ys = [value for _, value in steps]
        ys.append(ys[-1])
        top = max(top, *ys)
        ax.step(xs, ys, where="post", color=_COLORS["refcount"], linewidth=2, zorder=3)
        ax.plot(xs[:-1], ys[:-1], "o", color=_COLORS["refcount"], markersize=4, zorder=4)
        ax.text(
            end,
            ys[-1] + 0.15,
            label,
            fontsize=8,
            color=_COLORS["refcount"],
            ha="right",
            **_IN_AXES,
        )
    ax.set_ylim(-0.3, top + 0.6)
    ax.set_yticks(range(top + 1))
    ax.set_ylabel("refcount", fontsize=9)
    ax.grid(axis="both", color="#eeeeee", zorder=0)
    ax.set_xlabel(
        "step (one per recorded event, in order)"
        if axis == "step"
        else "milliseconds since the trace started",
        fontsize=9,
    )


def _legend(kinds: set[str], points: set[str]) -> list[Artist]:
    handles: list[Artist] = []
    if "lock" in kinds:
        handles.append(Patch(color=_COLORS["lock"], label="holds the listener lock"))
    if "lock.nested" in kinds:
        handles.append(Patch(color=_COLORS["lock.nested"], label="holds it again (recursive)"))
    if "lock.wait" in kinds:
        handles.append(
            Patch(
                facecolor="none",
                edgecolor=_COLORS["lock.wait"],
                hatch="////",
                label="blocked on the listener lock",
            )
        )
    if "wait" in kinds:
        handles.append(
            Patch(
                facecolor="none",
                edgecolor=_COLORS["wait"],
                hatch="xxx",
                label="blocked in event_del (libevent)",
            )
        )
    if "callback" in kinds:
        handles.append(Patch(color=_COLORS["callback"], label="user callback running"))
    if "call" in kinds:
        handles.append(Line2D([], [], color=_COLORS["call"], label="control call until it returns"))
    for kind, (marker, color, size, text) in _MARKERS.items():
        if kind in points:
            handles.append(
                Line2D(
                    [],
                    [],
                    marker=marker,
                    color=color,
                    markersize=size * 0.8,
                    linestyle="none",
                    label=text,
                )
            )
    handles.append(Line2D([], [], color=_COLORS["refcount"], linewidth=2, label="refcount"))
    return handles


def render_figure(
    result: ScenarioResult, path: str | os.PathLike[str], *, axis: str = "step"
) -> None:
    """Draw *result* as a swimlane timeline and save it to *path*.

    Args:
        result: a scenario's recording (``run_scenario``).
        path: the output file; its extension picks the format (``.png``, ``.svg``).
        axis: ``"step"`` (one step per event, the same picture on every run)
            or ``"time"`` (milliseconds).

    Raises:
        ValueError: an unknown *axis*, or an extension matplotlib cannot write.
        OSError: the file cannot be written.
    """
    x = _x_of(axis)
    parts = result.parts
    steps = max(len(p.events) for p in parts)
    width = min(max(_MIN_WIDTH, steps * _INCH_PER_STEP + 2.5), _MAX_WIDTH)
    ratios: list[float] = []
    for part in parts:
        ratios += [0.8 * _lane_gap(part) * len(lanes(part.events)) + 0.9, 1.2]
    fig = Figure(figsize=(width, sum(ratios) + 1.7), layout="constrained")
    grid = fig.add_gridspec(len(ratios), 1, height_ratios=ratios)
    kinds: set[str] = set()
    points: set[str] = set()
    for i, part in enumerate(parts):
        lanes_ax = fig.add_subplot(grid[2 * i])
        ref_ax = fig.add_subplot(grid[2 * i + 1], sharex=lanes_ax)
        xmin, xmax = _x_limits(part, x, axis)
        lanes_ax.set_xlim(xmin, xmax)
        per_inch = (xmax - xmin) / (width - _MARGIN_IN)
        k, p = _draw_lanes(lanes_ax, part, x, per_inch)
        kinds |= k
        points |= p
        _draw_refcount(ref_ax, part, x, axis)
        if axis == "step":
            ref_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(
        f"{result.name}\n{textwrap.fill(result.title, int(width * 9))}",
        fontsize=12.5,
        fontweight="bold",
    )
    fig.legend(
        handles=_legend(kinds, points),
        loc="outside lower center",
        ncols=4,
        fontsize=8.5,
        frameon=False,
    )
    # Fixed metadata and SVG ids, so that a re-rendered picture only differs
    # when the trace does.
    with matplotlib.rc_context({"svg.hashsalt": "threadlisten-trace"}):
        fig.savefig(path, dpi=DPI, metadata=_metadata(path))


def _x_limits(part: TracePart, x: Callable[[TraceEvent], float], axis: str) -> tuple[float, float]:
    first = min(x(e) for e in part.events)
    last = max(x(e) for e in part.events)
    if axis == "step":
        return first - 0.8, last + 1.8
    span = max(last - first, 1e-3)
    return first - 0.03 * span, last + 0.1 * span


def _metadata(path: str | os.PathLike[str]) -> dict[str, str | None]:
    if os.fspath(path).lower().endswith(".svg"):
        return {"Date": None, "Creator": "threadlisten trace"}
    return {"Software": "threadlisten trace"}
