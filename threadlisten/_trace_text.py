"""A trace as a text sequence diagram, for the terminal.

One row per event, in recording order; one column per thread.  On the left,
the state after the event: who holds each listener's lock and its refcount.
In a thread's column a bar marks what it is doing at that row::

    ┃  holds a listener lock
    ┊  is blocked (on a lock, or in a modelled wait)
    ╏  holds a listener lock *and* is blocked: half of a deadlock

so the lock's hand-over from one thread to the next reads top to bottom.
A row has a single event; a phrase too long for its column runs on to the
right unless a column there has a bar to show, and is cut short then.

Pure functions; any thread.
"""

from __future__ import annotations

from collections.abc import Sequence

from threadlisten._trace_layout import describe, display_thread, lanes
from threadlisten._trace_scenarios import ScenarioResult, TracePart
from threadlisten.trace import TraceEvent

__all__ = ["GLYPHS", "render_part_text", "render_text"]

#: Width of one thread's column, in characters.
LANE_WIDTH = 34

_GLYPHS = {"hold": "┃", "wait": "┊", "both": "╏", "rule": "─", "sep": "│", "cut": "…"}
_ASCII_GLYPHS = {"hold": "#", "wait": ":", "both": "!", "rule": "-", "sep": "|", "cut": "~"}


#: Every non-ASCII character the diagram may use (to test an output's encoding).
GLYPHS = "".join(_GLYPHS.values())


def _bar(g: dict[str, str], holds: bool, waits: bool) -> str:
    if holds and waits:
        return g["both"]
    return g["hold"] if holds else g["wait"] if waits else " "


def _listeners(events: Sequence[TraceEvent]) -> list[str]:
    seen: list[str] = []
    for e in events:
        if e.listener and e.listener not in seen:
            seen.append(e.listener)
    return seen


def render_part_text(part: TracePart, *, ascii_only: bool = False) -> str:
    """Return one ``TracePart`` as a sequence diagram (lines joined by newlines).

    Args:
        part: the traced run.
        ascii_only: use ``|`` and ``:`` instead of box-drawing characters.
    """
    g = _ASCII_GLYPHS if ascii_only else _GLYPHS
    events = part.events
    lane_names = lanes(events)
    listeners = _listeners(events)
    holder: dict[str, str] = {}  # listener -> lane holding its lock
    refs: dict[str, int] = {}
    waiting: set[str] = set()  # lanes blocked right now

    state_head = "".join(f"{lab + '.lock':>10} {lab + ' refs':>7}  " for lab in listeners)
    head = f"{'step':>4} {'ms':>8}  {state_head}" + "".join(
        f"{g['sep']} {name:<{LANE_WIDTH - 2}}" for name in lane_names
    )
    head = head.rstrip()
    key = (
        f"{g['hold']} holds a lock   {g['wait']} blocked   {g['both']} holds a lock and is blocked"
    )
    lines = [part.title, key, head, g["rule"] * len(head)]
    for e in events:
        lane = display_thread(e.thread)
        # Update the state first: a row shows the state *after* its event.
        if e.kind == "lock.acquire":
            if e.listener:
                holder[e.listener] = lane
            waiting.discard(lane)
        elif e.kind == "lock.release" and not e.value and e.listener:
            holder.pop(e.listener, None)
        elif e.kind in ("lock.wait", "wait.begin"):
            waiting.add(lane)
        elif e.kind in ("lock.timeout", "wait.end"):
            waiting.discard(lane)
        elif e.kind == "create" and e.listener:
            refs[e.listener] = 1
        elif e.kind == "refcount" and e.listener:
            refs[e.listener] = int(e.value or 0)
        state = "".join(
            f"{holder.get(lab, '-'):>10} {refs.get(lab, '-')!s:>7}  " for lab in listeners
        )
        row = f"{e.seq:>4} {e.time * 1000:>8.3f}  {state}"
        holding = set(holder.values())
        bars = [_bar(g, name in holding, name in waiting) for name in lane_names]
        for i, name in enumerate(lane_names):
            text = describe(e) if name == lane else ""
            if len(text) > LANE_WIDTH - 2:
                if any(b != " " for b in bars[i + 1 :]):
                    text = text[: LANE_WIDTH - 3] + g["cut"]
                else:
                    row += f"{g['sep']}{bars[i]}{text}"  # nothing to its right: run on
                    break
            row += f"{g['sep']}{bars[i]}{text:<{LANE_WIDTH - 2}}"
        lines.append(row.rstrip())
    for edge in part.cycle:
        lines.append(f"wait-for: {edge.waiter} -> {edge.holder} ({edge.waiter} waits {edge.what})")
    if part.cycle:
        lines.append("a cycle of waits: a deadlock (stopped by the model's watchdog)")
    return "\n".join(lines)


def render_text(result: ScenarioResult, *, ascii_only: bool = False) -> str:
    """Return a whole scenario as text: its title, each part's diagram, and its story."""
    out = [f"{result.name}: {result.title}", ""]
    for part in result.parts:
        out.append(render_part_text(part, ascii_only=ascii_only))
        out.append("")
    out.append("What it shows:")
    out.extend(f"  {line}" for line in result.story)
    return "\n".join(out)
