"""Linearizability checking: Wing & Gong's search with Lowe's memoisation.

A *history* is a list of completed operations, each with the logical times of
its invocation and its response (``History`` records them; in a scheduled run
one thread runs at a time, so a plain counter is a consistent clock).  It is
*linearizable* with respect to a sequential *model* when the operations can be
put in one sequence that

* respects real time: if ``a`` responded before ``b`` was invoked, ``a`` comes first;
* and is legal for the model: replaying it from the model's initial state,
  every operation is allowed to return the result it actually returned.

The search (Wing & Gong 1993): repeatedly pick, among the operations not yet
placed, one that no other unplaced operation precedes in real time, apply it
to the model state, recurse, and backtrack on failure.  Lowe's improvement
(as in Knossos and Porcupine): remember every ``(set of placed operations,
model state)`` pair already explored, since reaching it again cannot succeed
either.  The worst case stays exponential (the problem is NP-complete); the
histories here have a few dozen operations.

A model is nondeterministic when it needs to be: ``step`` returns every state
the operation may lead to (possibly none, if the result is not allowed), as
Porcupine's and Knossos's models do.

Thread-safety: a ``History`` is written by one thread at a time (a scheduled
run); ``check_linearizable`` is pure.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

__all__ = [
    "History",
    "Model",
    "NotLinearizable",
    "Operation",
    "check_linearizable",
    "linearize",
]

S = TypeVar("S", bound=Hashable)


@dataclass(frozen=True)
class Operation:
    """One completed operation of a history.

    Attributes:
        id: its index in the history, in invocation order.
        thread: the name of the thread that performed it.
        name: the operation, e.g. ``"set_cb"``.
        args: its arguments.
        result: what it returned (or a token for the exception it raised).
        invoke: the logical time of its invocation.
        response: the logical time of its response (> ``invoke``).
    """

    id: int
    thread: str
    name: str
    args: tuple[Any, ...]
    result: Any
    invoke: int
    response: int

    def __str__(self) -> str:
        args = ", ".join(repr(a) for a in self.args)
        return f"{self.name}({args}) -> {self.result!r}"


class History:
    """Records operations with invocation and response times from one logical clock."""

    def __init__(self) -> None:
        """Start an empty history at time 0."""
        self._clock = 0
        self._open: dict[int, tuple[str, str, tuple[Any, ...], int]] = {}
        self._next = 0
        self._done: list[tuple[str, str, tuple[Any, ...], Any, int, int]] = []

    def _tick(self) -> int:
        self._clock += 1
        return self._clock

    def invoke(self, thread: str, name: str, *args: Any) -> int:
        """Record the invocation of ``name(*args)`` by *thread*; return a token for ``respond``."""
        token = self._next
        self._next += 1
        self._open[token] = (thread, name, args, self._tick())
        return token

    def respond(self, token: int, result: Any) -> None:
        """Record the response (*result*) of the operation *token* was returned for.

        Raises:
            KeyError: unknown or already answered token.
        """
        thread, name, args, invoke = self._open.pop(token)
        self._done.append((thread, name, args, result, invoke, self._tick()))

    def instant(self, thread: str, name: str, args: tuple[Any, ...], result: Any) -> None:
        """Record an operation whose invocation and response are adjacent."""
        self.respond(self.invoke(thread, name, *args), result)

    @property
    def pending(self) -> int:
        """How many operations were invoked and never answered."""
        return len(self._open)

    def operations(self) -> list[Operation]:
        """The completed operations, in invocation order, numbered from 0."""
        ordered = sorted(self._done, key=lambda item: item[4])
        return [
            Operation(i, thread, name, args, result, invoke, response)
            for i, (thread, name, args, result, invoke, response) in enumerate(ordered)
        ]


class Model(Protocol[S]):
    """A sequential specification: an initial state and a transition relation."""

    def init(self) -> S:
        """The initial state (hashable: states are memoised)."""
        ...

    def step(self, state: S, op: Operation) -> Iterable[S]:
        """Every state *op*, returning ``op.result``, may lead to from *state*
        (nothing if that result is not allowed there)."""
        ...


@dataclass
class _Search(Generic[S]):
    ops: Sequence[Operation]
    model: Model[S]
    seen: set[tuple[int, S]]
    best: list[int]
    best_state: S | None = None


def linearize(ops: Sequence[Operation], model: Model[S]) -> list[Operation] | None:
    """Return a linearization of *ops* for *model*, or None if there is none.

    See the module docstring for the algorithm.
    """
    result, _, _ = _linearize(ops, model)
    return result


def _linearize(
    ops: Sequence[Operation], model: Model[S]
) -> tuple[list[Operation] | None, list[Operation], object]:
    ordered = sorted(ops, key=lambda op: op.invoke)
    search: _Search[S] = _Search(ordered, model, set(), [])
    full = (1 << len(ordered)) - 1
    path: list[int] = []
    init = model.init()
    if _search(search, 0, init, full, path):
        return [ordered[i] for i in path], [], None
    return None, [ordered[i] for i in search.best], search.best_state


def _search(search: _Search[S], placed: int, state: S, full: int, path: list[int]) -> bool:
    if placed == full:
        return True
    key = (placed, state)
    if key in search.seen:
        return False
    search.seen.add(key)
    ops = search.ops
    # An unplaced operation may go next iff no unplaced operation responded
    # before it was invoked, i.e. it was invoked before the earliest response.
    earliest = min(ops[i].response for i in range(len(ops)) if not placed >> i & 1)
    for i in range(len(ops)):
        if placed >> i & 1 or ops[i].invoke > earliest:
            continue
        for after in search.model.step(state, ops[i]):
            path.append(i)
            if len(path) > len(search.best):
                search.best = list(path)
                search.best_state = after
            if _search(search, placed | 1 << i, after, full, path):
                return True
            path.pop()
    return False


class NotLinearizable(AssertionError):
    """A history has no linearization.  The message shows the history and how far
    the search got.

    Attributes:
        history: the operations.
        longest: the longest legal, real-time-respecting prefix found.
    """

    def __init__(
        self, ops: Sequence[Operation], longest: Sequence[Operation], state: object
    ) -> None:
        """Build the message."""
        self.history = list(ops)
        self.longest = list(longest)
        lines = ["the history is not linearizable:", format_history(ops)]
        lines.append(f"longest linearizable prefix ({len(longest)} of {len(ops)} operations):")
        lines.extend(f"  {op.thread}: {op}" for op in longest)
        lines.append(f"model state after it: {state!r}")
        missing = [op for op in ops if op not in longest]
        lines.append(
            "none of the remaining operations can go next: " + "; ".join(map(str, missing))
        )
        super().__init__("\n".join(lines))


def format_history(ops: Sequence[Operation]) -> str:
    """Return *ops* as a table: invoke..response time, thread, operation and result."""
    ordered = sorted(ops, key=lambda op: op.invoke)
    width = max([6, *(len(op.thread) for op in ordered)])
    lines = [f"  {'time':>9}  {'thread':<{width}}  operation -> result"]
    for op in ordered:
        lines.append(f"  {op.invoke:>4}..{op.response:<4} {op.thread:<{width}}  {op}")
    return "\n".join(lines)


def check_linearizable(ops: Sequence[Operation], model: Model[S]) -> list[Operation]:
    """Return a linearization of *ops* for *model*.

    Raises:
        NotLinearizable: there is none (the message shows the history, the
            longest linearizable prefix and the model state after it).
    """
    result, longest, state = _linearize(ops, model)
    if result is None:
        raise NotLinearizable(ops, longest, state)
    return result
