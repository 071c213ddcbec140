"""The live display of a run: a rich table on a terminal, plain lines otherwise.

The runner calls ``update`` about twice a second with a ``Sample``.  The
rich table's rates are between consecutive samples; plain lines are printed
every ``progress_interval`` seconds (so a log stays short) with the rates
since the previous line.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any, TextIO

__all__ = ["Display", "Sample"]

#: Rich redraws this many times a second at most.
RICH_REFRESH_PER_SECOND = 4


@dataclasses.dataclass
class Sample:
    """The state of a run at one moment."""

    elapsed: float
    ops: dict[str, int]  # cumulative, by kind, plus "total"
    connections: dict[str, int]  # cumulative: attempted, echoed, refused, reset, failed
    accepted: int
    descriptors: int
    listeners: int
    listeners_created: int
    violations: int


def _rate(now: int, before: int, dt: float) -> float:
    return (now - before) / dt if dt > 0 else 0.0


class Display:
    """Shows ``Sample``s.

    Args:
        mode: "rich", "plain" or "auto" (rich if *stream* is a TTY and rich imports).
        progress_interval: seconds between plain lines.
        stream: where to write (stdout by default).

    Thread-safety: one thread (the runner's) calls every method.
    """

    def __init__(self, mode: str, progress_interval: float, stream: TextIO | None = None) -> None:
        self.stream = sys.stdout if stream is None else stream
        self.interval = progress_interval
        self._prev: Sample | None = None
        self._last_line: Sample | None = None  # plain mode: rates since the last line
        self._live: Any = None
        if mode == "auto":
            mode = "rich" if self.stream.isatty() else "plain"
        if mode == "rich":
            try:
                from rich.console import Console
                from rich.live import Live
            except ImportError:  # rich is optional: fall back to lines
                mode = "plain"
            else:
                console = Console(file=self.stream)
                self._live = Live(
                    console=console, refresh_per_second=RICH_REFRESH_PER_SECOND, transient=False
                )
        self.mode = mode

    def start(self) -> None:
        """Start showing (rich takes over the terminal area)."""
        if self._live is not None:
            self._live.start()

    def stop(self) -> None:
        """Stop showing; the last table stays on screen."""
        if self._live is not None:
            self._live.stop()

    def update(self, sample: Sample) -> None:
        """Show *sample* (rates against the previous sample)."""
        prev = self._prev or sample
        self._prev = sample
        dt = sample.elapsed - prev.elapsed
        if self._live is not None:
            self._live.update(self._table(sample, prev, dt))
        else:
            last = self._last_line
            if last is None or sample.elapsed - last.elapsed >= self.interval:
                since = last or sample
                self._last_line = sample
                line = self._line(sample, since, sample.elapsed - since.elapsed)
                self.stream.write(line + "\n")
                self.stream.flush()

    def _line(self, s: Sample, prev: Sample, dt: float) -> str:
        ops_rate = _rate(s.ops.get("total", 0), prev.ops.get("total", 0), dt)
        conn_rate = _rate(s.connections["attempted"], prev.connections["attempted"], dt)
        c = s.connections
        return (
            f"[{s.elapsed:7.1f} s] ops {s.ops.get('total', 0):,} ({ops_rate:,.0f}/s)"
            f"  connections {c['attempted']:,} ({conn_rate:,.0f}/s): echoed {c['echoed']:,}"
            f" refused {c['refused']:,} reset {c['reset']:,} failed {c['failed']:,}"
            f"  fds {s.descriptors}  listeners {s.listeners} (made {s.listeners_created})"
            f"  violations {s.violations}"
        )

    def _table(self, s: Sample, prev: Sample, dt: float) -> Any:
        from rich.table import Table

        table = Table(title=f"threadlisten stress: {s.elapsed:,.1f} s", expand=False)
        table.add_column("what")
        table.add_column("total", justify="right")
        table.add_column("per second", justify="right")
        kinds = sorted(k for k in s.ops if k != "total")
        for kind in [*kinds, "total"]:
            now, before = s.ops.get(kind, 0), prev.ops.get(kind, 0)
            table.add_row(f"op {kind}", f"{now:,}", f"{_rate(now, before, dt):,.0f}")
        for key in ("attempted", "echoed", "refused", "reset", "self_connected", "failed"):
            now, before = s.connections[key], prev.connections[key]
            table.add_row(f"connections {key}", f"{now:,}", f"{_rate(now, before, dt):,.0f}")
        table.add_row("accepted", f"{s.accepted:,}", f"{_rate(s.accepted, prev.accepted, dt):,.0f}")
        table.add_row("open descriptors", str(s.descriptors), "")
        table.add_row("listeners now (made)", f"{s.listeners} ({s.listeners_created})", "")
        style = "bold red" if s.violations else "green"
        table.add_row("violations", f"[{style}]{s.violations}[/{style}]", "")
        return table
