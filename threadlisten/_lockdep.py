"""The lock-order graph of lock-debugging mode (a small lockdep).

An edge ``A -> B`` means "some thread acquired B while holding A".  Edges are
kept per lock *class* (``listener.lock``, ``base.lock``, the pseudo-class
``base.dispatch``), so one observation of an order, by any instance, in any
test, counts for all instances: that is what lets a single sequential run
report a deadlock that needs two threads and bad luck to happen.  The first
acquisition that would close a cycle raises ``LockOrderError`` and names
every edge of the cycle with the stack where it was first seen.

Same-class nesting.  Two locks of one class (listener A's callback calls
listener B, which takes B's lock under A's) would be a self-edge
``listener.lock -> listener.lock``; Linux's lockdep reports that unless the
code says ``*_nested()``.  threadlisten instead records the order of the two
*instances* (``listener.lock#3 -> listener.lock#7``) in a second graph, one
per class, and reports a cycle there: A under B after B under A.  No
annotation is needed and nesting in one consistent order stays silent.
Instances are numbered by ``TrackedLock.serial``, never reused, so a freed
listener's lock can never be confused with a new one.  (A cycle mixing
classes always shows in the class graph: a closed walk through two classes
contains a cycle of classes.)

libevent has no order checking; its nearest discipline is ``EVLOCK_LOCK2``,
which takes two locks in address order.

Thread-safety: one graph is shared by every thread; it has its own internal
lock (a plain, unchecked ``threading.Lock``), taken only when a new edge is
seen.  The fast path (an order seen before) is a set lookup per held lock.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from threadlisten._debug_locks import (
    LockDebugError,
    TrackedLock,
    capture_stack,
    fail,
    hide_from_stacks,
)

__all__ = ["Edge", "LockGraph", "LockOrderError", "LockdepReport"]

hide_from_stacks(__file__)


@dataclass(frozen=True)
class Edge:
    """One observed order: *dst* was acquired while *src* was held.

    Attributes:
        src, dst: lock class names (``kind == "class"``) or instance names
            such as ``"listener.lock#3 (listener fd=7)"`` (``kind == "instance"``).
        kind: ``"class"`` for two classes, ``"instance"`` for two locks of one class.
        thread: the name of the thread that first showed this order.
        stack: where it was first seen, formatted, innermost frame last.
    """

    src: str
    dst: str
    kind: Literal["class", "instance"]
    thread: str
    stack: str

    def format(self) -> str:
        """Return ``"src -> dst (first seen in thread T at:)"`` and the stack, indented."""
        stack = "".join("    " + line for line in self.stack.splitlines(keepends=True))
        return f"  {self.src} -> {self.dst}, first seen in thread {self.thread!r} at:\n{stack}"


class LockOrderError(LockDebugError):
    """An acquisition would close a cycle in the lock order: a potential deadlock.

    Raised *before* the lock is waited for, by the thread that tried; the new
    order is not added to the graph, so the graph stays acyclic.

    Attributes:
        new_edge: the order this acquisition would add (its stack: here).
        cycle: the edges already in the graph that lead back, in order,
            each with the stack where it was first seen.
    """

    def __init__(self, new_edge: Edge, cycle: Sequence[Edge]) -> None:
        """Make the error from the new edge and the path that closes the cycle."""
        lines = [
            f"lock order inversion: {new_edge.dst} acquired (or waited for) while holding "
            f"{new_edge.src}",
            "this order (new):",
            new_edge.format(),
            "conflicts with the opposite order seen before:",
            *(edge.format() for edge in cycle),
        ]
        super().__init__("\n".join(lines), check="lock-order")
        self.new_edge = new_edge
        self.cycle = tuple(cycle)


@dataclass(frozen=True)
class LockdepReport:
    """A snapshot of the lock-order graph (``threadlisten.debug.lockdep_report()``).

    Attributes:
        classes: every lock class seen in an edge, sorted.
        edges: every edge, class edges first, in the order they were first seen.
    """

    classes: tuple[str, ...]
    edges: tuple[Edge, ...]

    def to_dot(self) -> str:
        """Return the graph in Graphviz dot: class edges solid, instance edges dashed.

        Each edge is labelled with the thread and the innermost frame where it
        was first seen.
        """
        out = ["digraph lockdep {", "  rankdir=LR;", "  node [shape=box];"]
        out.extend(f"  {_dot_str(name)};" for name in self.classes)
        for edge in self.edges:
            frames = edge.stack.strip().splitlines()
            where = frames[-2].strip() if len(frames) >= 2 else ""
            label = f"{edge.thread}\\n{where}" if where else edge.thread
            style = "solid" if edge.kind == "class" else "dashed"
            out.append(
                f"  {_dot_str(edge.src)} -> {_dot_str(edge.dst)} "
                f"[style={style}, label={_dot_str(label)}];"
            )
        out.append("}")
        return "\n".join(out) + "\n"

    def write_dot(self, path: str | Path) -> None:
        """Write ``to_dot()`` to *path* (render with ``dot -Tsvg``)."""
        Path(path).write_text(self.to_dot(), encoding="utf-8")

    def __str__(self) -> str:
        if not self.edges:
            return "lock order: no edges"
        return "lock order:\n" + "\n".join(f"  {e.src} -> {e.dst} ({e.kind})" for e in self.edges)


def _dot_str(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\\\\n", "\\n")
    return f'"{escaped}"'


class LockGraph:
    """The process-wide graph of lock orders, with cycle detection on each new edge.

    Thread-safety: any thread.  libevent has no counterpart (see the module docstring).
    """

    def __init__(self) -> None:
        """Make an empty graph."""
        self._mutex = threading.Lock()
        # Keys are (class, class) str pairs or (serial, serial) int pairs.
        self._seen: set[tuple[Hashable, Hashable]] = set()
        self._adjacent: dict[Hashable, dict[Hashable, Edge]] = {}
        self._order: list[Edge] = []

    def check_acquire(self, lock: TrackedLock, held: Sequence[TrackedLock]) -> None:
        """Record that *lock* is being acquired while *held* are held.

        Args:
            lock: the lock about to be taken (or a pseudo-lock waited for).
            held: the calling thread's held locks.

        Raises:
            LockOrderError: one of the new orders closes a cycle; nothing is recorded.

        Thread-safety: any thread; called before blocking on *lock*.
        """
        name = lock.name
        # The fast path reads ``_seen`` without ``_mutex``, on purpose: it
        # runs at every blocking acquisition.  That is safe with and without
        # the GIL: a set's ``in`` and ``add`` are atomic (on the free-threaded
        # build each set has its own internal lock), edges are only added, so
        # a stale "not seen" merely takes the locked path, which checks
        # again; only ``reset()`` (tests, between runs) removes anything.
        seen = self._seen
        for other in held:
            if other is lock:
                continue
            key = (other.name, name) if other.name != name else (other.serial, lock.serial)
            if key not in seen:
                self._add(other, lock, key)

    def _add(self, src: TrackedLock, dst: TrackedLock, key: tuple[Hashable, Hashable]) -> None:
        same_class = src.name == dst.name
        edge = Edge(
            src=src.describe() if same_class else src.name,
            dst=dst.describe() if same_class else dst.name,
            kind="instance" if same_class else "class",
            thread=threading.current_thread().name,
            stack="".join(capture_stack().format()),
        )
        with self._mutex:
            if key in self._seen:
                return
            path = self._path(key[1], key[0])
            if path is None:
                self._seen.add(key)
                self._adjacent.setdefault(key[0], {})[key[1]] = edge
                self._order.append(edge)
                return
        fail(LockOrderError(edge, path))

    def _path(self, start: Hashable, goal: Hashable) -> list[Edge] | None:
        # Breadth-first: the shortest chain of known edges from start to goal.
        # Called with self._mutex held.
        parents: dict[Hashable, tuple[Hashable, Edge]] = {}
        queue = deque([start])
        visited = {start}
        while queue:
            node = queue.popleft()
            if node == goal:
                path: list[Edge] = []
                while node != start:
                    node, edge = parents[node]
                    path.append(edge)
                return path[::-1]
            for nxt, edge in self._adjacent.get(node, {}).items():
                if nxt not in visited:
                    visited.add(nxt)
                    parents[nxt] = (node, edge)
                    queue.append(nxt)
        return None

    def report(self) -> LockdepReport:
        """Return a snapshot of the graph.  Any thread."""
        with self._mutex:
            edges = list(self._order)
        edges.sort(key=lambda e: e.kind != "class")  # stable: first-seen order within a kind
        classes = sorted({n for e in edges if e.kind == "class" for n in (e.src, e.dst)})
        return LockdepReport(classes=tuple(classes), edges=tuple(edges))

    def reset(self) -> None:
        """Forget every edge (for tests).  Any thread."""
        with self._mutex:
            self._seen.clear()
            self._adjacent.clear()
            self._order.clear()
