"""What both renderers of a trace need: lanes, spans, and a phrase per event.

A trace (``threadlisten.trace``) is a flat list of events.  Both the text
sequence diagram (``_trace_text``) and the swimlane picture (``_trace_plot``)
show it the same way: one lane per thread, and *spans* for what lasts (a
lock held, a wait, a user callback, a control call from its start to its
return).  This module computes those once, so the two views cannot disagree.

Pure functions of the events; any thread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from threadlisten.trace import TraceEvent

__all__ = [
    "CALL_KINDS",
    "Span",
    "describe",
    "display_thread",
    "lanes",
    "refcount_steps",
    "spans",
]

#: The control calls recorded by the traced listener.
CALL_KINDS = ("enable", "disable", "set_cb", "set_error_cb", "free")

#: Lanes that come first when present, in this order; others follow in the
#: order they first appear.
_LANE_ORDER = ("main", "loop")


def display_thread(name: str) -> str:
    """The lane name of thread *name*: ``MainThread`` is shown as ``main``."""
    return "main" if name == "MainThread" else name


def lanes(events: Sequence[TraceEvent]) -> list[str]:
    """The threads of *events* as lane names: ``main``, ``loop``, then the rest."""
    seen: list[str] = []
    for e in events:
        name = display_thread(e.thread)
        if name not in seen:
            seen.append(name)
    first = [name for name in _LANE_ORDER if name in seen]
    return first + [name for name in seen if name not in first]


@dataclass(frozen=True)
class Span:
    """Something that lasts, in one lane, from ``start`` to ``end`` (x units).

    Attributes:
        lane: the lane (display thread name).
        kind: ``lock`` (held, depth 1), ``lock.nested`` (held again, depth >= 2),
            ``lock.wait`` (blocked on the lock), ``wait`` (another modelled
            wait), ``callback`` (a user callback), ``call`` (a control call).
        start, end: x positions of the opening and closing events.
        label: what to write on it (the call's name, the wait's reason ...).
        listener: the listener it concerns, if any.
        closed: False if the trace ended before the closing event.
        outcome: the closing event's kind (``lock.timeout`` for a wait that
            gave up, ``return`` for a call ...).
    """

    lane: str
    kind: str
    start: float
    end: float
    label: str
    listener: str | None
    closed: bool = True
    outcome: str = ""


def spans(events: Sequence[TraceEvent], x: Callable[[TraceEvent], float]) -> list[Span]:
    """Pair opening and closing events of each lane into ``Span``\\ s.

    Args:
        events: the trace, in recording order.
        x: the position of an event (its ``seq``, or its time).

    A span still open when the trace ends is closed at the last position
    plus one half, with ``closed=False``.
    """
    result: list[Span] = []
    # (lane, kind, listener) -> (start, label)
    open_: dict[tuple[str, str, str | None], tuple[float, str]] = {}

    def begin(e: TraceEvent, kind: str, label: str) -> None:
        open_[(display_thread(e.thread), kind, e.listener)] = (x(e), label)

    def end(e: TraceEvent, kind: str) -> None:
        key = (display_thread(e.thread), kind, e.listener)
        if key in open_:
            start, label = open_.pop(key)
            result.append(Span(key[0], kind, start, x(e), label, e.listener, True, e.kind))

    for e in events:
        k = e.kind
        if k == "lock.wait":
            begin(e, "lock.wait", f"waits for {e.listener}.lock")
        elif k == "lock.acquire":
            end(e, "lock.wait")
            depth = int(e.value or 0)
            if depth == 1:
                begin(e, "lock", f"{e.listener}.lock")
            elif depth == 2:
                begin(e, "lock.nested", f"{e.listener}.lock again")
        elif k == "lock.release":
            depth = int(e.value or 0)
            if depth == 0:
                end(e, "lock")
            elif depth == 1:
                end(e, "lock.nested")
        elif k == "lock.timeout":
            end(e, "lock.wait")
        elif k == "wait.begin":
            begin(e, "wait", e.detail)
        elif k == "wait.end":
            end(e, "wait")
        elif k == "callback_enter":
            begin(e, "callback", f"{e.detail} callback")
        elif k == "callback_exit":
            end(e, "callback")
        elif k in CALL_KINDS:
            begin(e, "call", _call_text(e))
        elif k == "return":
            end(e, "call")
    if open_:
        last = max(x(e) for e in events) + 0.5
        for (lane, kind, listener), (start, label) in open_.items():
            result.append(Span(lane, kind, start, last, label, listener, False))
    return result


def refcount_steps(events: Sequence[TraceEvent], listener: str) -> list[tuple[TraceEvent, int]]:
    """The refcount of *listener* after each event that set it: its ``create``
    (1, the owner's reference) and every ``refcount`` event."""
    steps: list[tuple[TraceEvent, int]] = []
    for e in events:
        if e.listener == listener:
            if e.kind == "create":
                steps.append((e, 1))
            elif e.kind == "refcount":
                steps.append((e, int(e.value or 0)))
    return steps


def _call_text(e: TraceEvent) -> str:
    args = e.detail if e.kind in ("set_cb", "set_error_cb") else ""
    return f"{e.listener}.{e.kind}({args})"


def describe(e: TraceEvent) -> str:
    """A short phrase for event *e*, as the text diagram writes it in its lane."""
    who = e.listener or ""
    k = e.kind
    depth = "" if e.value is None else int(e.value)
    if k == "create":
        return f"creates {who} ({e.detail})"
    if k == "lock.wait":
        return f"waits for {who}.lock (held)"
    if k == "lock.acquire":
        return f"takes {who}.lock" + (f" again (depth {depth})" if depth != 1 else "")
    if k == "lock.release":
        return f"releases {who}.lock" + (f" (depth {depth})" if depth else "")
    if k == "lock.timeout":
        return f"gives up on {who}.lock ({e.value or 0:.1f} s)"
    if k == "refcount":
        return f"{who} refcount -> {depth}"
    if k == "dispatched":
        return f"{who} read event dispatched"
    if k == "accepted":
        return "accept() -> a connection"
    if k == "callback_enter":
        return f"enters the {e.detail} callback"
    if k == "callback_exit":
        return f"leaves the {e.detail} callback"
    if k in CALL_KINDS:
        return f"calls {_call_text(e)}"
    if k == "return":
        return f"{who}.{e.detail}() returns" if " " not in e.detail else f"{who}.{e.detail}"
    if k == "destroy":
        return f"destroys {who} (lock held)"
    if k == "destroyed":
        return f"{who} destroyed, lock released for good"
    if k == "backoff_expired":
        return f"{who}'s back-off timer fires"
    if k == "loop_enter":
        return "starts running the loop"
    if k == "loop_exit":
        return "stops running the loop"
    if k == "wait.begin":
        return f"waits: {e.detail}"
    if k == "wait.end":
        return f"stops waiting: {e.detail}"
    if k == "mark":
        return f"# {e.detail}"
    return f"{k} {e.detail}".strip()
