"""Interleaved rounds: A B C ... A B C ..., so drift in the machine's speed
(other work starting, thermal limits) hits every row alike.

A failed measurement is recorded with its reason and the run goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from tlbench.log import Log
from tlbench.procs import ServerError

_K = TypeVar("_K")
_R = TypeVar("_R")


@dataclass
class Collected(Generic[_K, _R]):
    """Per key, the results of its rounds and the errors of the failed ones."""

    results: dict[_K, list[_R]] = field(default_factory=dict)
    errors: dict[_K, list[str]] = field(default_factory=dict)


def interleave(
    keys: Sequence[_K],
    rounds: int,
    measure: Callable[[_K], _R],
    log: Log,
    what: str,
    describe: Callable[[_K, _R], str] = lambda k, r: str(r),
) -> Collected[_K, _R]:
    """Call ``measure(key)`` for every key, *rounds* times, in interleaved order.

    ``ServerError``, ``OSError`` and ``TimeoutError`` from one measurement are
    recorded under its key; anything else stops the run.
    """
    out: Collected[_K, _R] = Collected()
    for r in range(rounds):
        for key in keys:
            try:
                result = measure(key)
            except (ServerError, OSError, TimeoutError, RuntimeError) as exc:
                out.errors.setdefault(key, []).append(f"round {r + 1}: {exc}")
                log(f"{what} round {r + 1}/{rounds} {key}: FAILED {exc}")
                continue
            out.results.setdefault(key, []).append(result)
            log(f"{what} round {r + 1}/{rounds} {key}: {describe(key, result)}")
    return out
