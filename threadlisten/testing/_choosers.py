"""Choosers: who decides which runnable thread performs the next step.

Every chooser sees the same encoding of a decision, made only when two or
more threads are runnable: the options are ordered with **the thread that
ran last first, if it can go on** (so choice 0 means "no preemption"), then
the other runnable threads in creation order.  A schedule is therefore the
list of non-zero choices with their step numbers, which is what the replay
string holds: ``"s1:17=1,23=2"`` means "at step 17 take option 1, at step 23
option 2, otherwise option 0".

* ``HypothesisChooser(data)``: Hypothesis draws every choice.  Shrinking
  drives choices to 0 and schedules short, so a failure shrinks to few
  preemptions.  Probabilistic.
* ``DFSChooser(max_preemptions=2)``: every schedule with at most that many
  preemptions, each run once, in order of increasing preemptions (CHESS's
  iterative context bounding), so the first failure found has the fewest
  preemptions possible.  Bounded-exhaustive at the declared points.
* ``PCTChooser(seed, depth)``: Burckhardt et al.'s probabilistic concurrency
  testing: random thread priorities plus ``depth - 1`` random priority-change
  steps; finds a bug of depth *d* with probability >= 1/(n k^(d-1)) per run.
* ``ReplayChooser(schedule)``: replays a replay string or choice mapping.

A chooser is driven by ``Explorer.run``: ``start_schedule()`` before each
run (False: nothing left), ``choose()`` for each decision, ``end_schedule()``
after.  Thread-safety: ``start_schedule``/``end_schedule`` are called in the
explorer's thread; ``choose`` there too unless the chooser sets
``choose_anywhere = True``, in which case it is called in whichever thread of
the run reaches the decision (never two at once), which saves two thread
switches per decision.  Hypothesis draws only on the test's thread.
"""

from __future__ import annotations

import heapq
import random
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol

from threadlisten.testing._controller import ExplorerError, Option, StepRecord

if TYPE_CHECKING:
    from hypothesis.strategies import DataObject

__all__ = [
    "Chooser",
    "DFSChooser",
    "HypothesisChooser",
    "PCTChooser",
    "ReplayChooser",
    "format_schedule",
    "parse_schedule",
]

#: Version tag of replay strings.  Bump it if the encoding of a decision changes.
SCHEDULE_VERSION: Final = "s1"

_SCHEDULE_RE = re.compile(r"^s1:((?:\d+=\d+)(?:,\d+=\d+)*)?$")


def format_schedule(trace: Sequence[StepRecord]) -> str:
    """Return the replay string of a run's steps: ``"s1:<step>=<choice>,..."``.

    Only non-zero choices are listed; every other step took option 0.
    """
    parts = [f"{s.number}={s.choice}" for s in trace if s.choice]
    return f"{SCHEDULE_VERSION}:" + ",".join(parts)


def parse_schedule(text: str) -> dict[int, int]:
    """Parse a replay string into ``{step: choice}``.

    Raises:
        ValueError: not a replay string of this version.
    """
    text = text.strip()
    if not _SCHEDULE_RE.match(text):
        raise ValueError(f"not a replay string ({SCHEDULE_VERSION}:<step>=<choice>,...): {text!r}")
    body = text.partition(":")[2]
    choices: dict[int, int] = {}
    for item in filter(None, body.split(",")):
        step, _, choice = item.partition("=")
        choices[int(step)] = int(choice)
    return choices


class Chooser(Protocol):
    """What ``Explorer`` needs of a chooser (see the module docstring)."""

    def start_schedule(self) -> bool:
        """Prepare the next run; return False when no run is left."""
        ...

    def choose(self, step: int, options: Sequence[Option], current_runnable: bool) -> int:
        """Return the index in *options* of the thread that performs step *step*.

        Args:
            step: the number the step will have (from 1).
            options: the runnable threads (two or more), option 0 first.
            current_runnable: option 0 is the thread that ran last (so any
                other choice is a preemption).
        """
        ...

    def end_schedule(self, trace: Sequence[StepRecord], failed: bool) -> None:
        """Learn from the finished run (its steps; whether it failed)."""
        ...

    def describe(self) -> str:
        """A short description for reports, e.g. ``"DFSChooser(max_preemptions=2)"``."""
        ...


class _OneRun:
    """Base of the choosers that run exactly one schedule per ``Explorer.run``."""

    def __init__(self) -> None:
        self._used = False

    def start_schedule(self) -> bool:
        if self._used:
            return False
        self._used = True
        return True

    def end_schedule(self, trace: Sequence[StepRecord], failed: bool) -> None:
        pass


class HypothesisChooser(_OneRun):
    """Let Hypothesis draw every scheduling decision (one run per ``Explorer.run``).

    Args:
        data: the ``st.data()`` object of a ``@given`` test.

    Each decision with *n* runnable threads is an integer in ``[0, n)``:
    0 keeps the thread that ran last running, so Hypothesis's shrinking
    (towards fewer and smaller choices) minimises preemptions.  The draws are
    made on the test's thread (the explorer's), as Hypothesis requires.

    The draws are not echoed as ``Draw n: ...`` lines in Hypothesis's report
    (a schedule has dozens); the failure's schedule table and replay string
    say the same in a readable form.  That uses ``data.conjecture_data``,
    which Hypothesis calls semi-stable; if it is missing, ``data.draw`` is used.
    """

    def __init__(self, data: DataObject) -> None:
        super().__init__()
        from hypothesis import strategies as st

        self._data = data
        self._st = st
        self._strategies: dict[int, Any] = {}
        conjecture = getattr(data, "conjecture_data", None)
        self._raw_draw = getattr(conjecture, "draw", None)

    def choose(self, step: int, options: Sequence[Option], current_runnable: bool) -> int:
        """Draw the choice for *step* from Hypothesis."""
        n = len(options)
        strategy = self._strategies.get(n)
        if strategy is None:
            strategy = self._strategies[n] = self._st.integers(0, n - 1)
        if self._raw_draw is not None:
            value: int = self._raw_draw(strategy)
        else:
            value = self._data.draw(strategy, label=f"step {step}")
        return value

    def describe(self) -> str:
        return "HypothesisChooser"


class ReplayChooser(_OneRun):
    """Replay a schedule (one run per ``Explorer.run``).

    Args:
        schedule: a replay string (``"s1:17=1,23=2"``, as printed by a
            failure) or a mapping ``{step: choice}``; steps not listed take 0.
        strict: raise ``ExplorerError`` if the schedule does not fit the run
            (a listed step had no decision or fewer options), i.e. the code
            or scenario changed since the schedule was recorded.  With
            ``strict=False`` such entries are ignored (a choice beyond the
            options falls back to 0), to replay a bug's schedule on fixed code.
    """

    #: ``choose`` may run on any thread of the run (see the module docstring).
    choose_anywhere = True

    def __init__(self, schedule: str | Mapping[int, int], *, strict: bool = True) -> None:
        super().__init__()
        self._choices = parse_schedule(schedule) if isinstance(schedule, str) else dict(schedule)
        self._strict = strict
        self._used_steps: set[int] = set()
        self._text = schedule if isinstance(schedule, str) else None

    def choose(self, step: int, options: Sequence[Option], current_runnable: bool) -> int:
        """Return the recorded choice for *step* (0 if none)."""
        choice = self._choices.get(step, 0)
        if choice >= len(options):
            if self._strict:
                raise ExplorerError(
                    f"replay does not fit: step {step} has {len(options)} options, the "
                    f"schedule says {choice} (did the code or the scenario change?)"
                )
            return 0
        self._used_steps.add(step)
        return choice

    def end_schedule(self, trace: Sequence[StepRecord], failed: bool) -> None:
        """Check (strict) that every listed step was a decision of a run that
        passed (a failing run may stop before the schedule's end)."""
        unused = sorted(set(self._choices) - self._used_steps)
        if unused and self._strict and not failed:
            raise ExplorerError(
                f"replay does not fit: steps {unused} of the schedule were not decisions of "
                "this run (did the code or the scenario change?)"
            )

    def describe(self) -> str:
        text = self._text if self._text is not None else repr(self._choices)
        return f"ReplayChooser({text!r})"


class DFSChooser:
    """Every schedule with at most *max_preemptions* preemptions, each once.

    Args:
        max_preemptions: the preemption bound (CHESS; loom's
            ``LOOM_MAX_PREEMPTIONS``).  Switching away from a thread that
            blocked or finished is free; stopping a thread that could go on
            counts one.
        max_schedules: a safety cap; when it is reached the exploration stops
            with ``complete == False``.

    The schedule tree is walked by prefix: a run replays a prefix of choices
    and takes option 0 after it; for every decision it met after the prefix,
    each other option becomes a new prefix, queued by its preemption count.
    Prefixes are run in order of increasing preemptions, so all schedules
    with 0 preemptions run first, then those with 1, and so on: the first
    failure has as few preemptions as any failure within the bound.

    Attributes:
        explored: schedules run so far.
        complete: True once every schedule within the bound was run.
        by_preemptions: how many schedules had 0, 1, 2 ... preemptions.
    """

    #: ``choose`` may run on any thread of the run (see the module docstring).
    choose_anywhere = True

    def __init__(self, max_preemptions: int = 2, *, max_schedules: int = 200_000) -> None:
        if max_preemptions < 0:
            raise ValueError("max_preemptions must be >= 0")
        self.max_preemptions = max_preemptions
        self.max_schedules = max_schedules
        self.explored = 0
        self.complete = False
        self.by_preemptions: Counter[int] = Counter()
        # (preemptions, order, prefix of (choice, options) pairs)
        self._queue: list[tuple[int, int, tuple[tuple[int, int], ...]]] = [(0, 0, ())]
        self._order = 1
        self._prefix: tuple[tuple[int, int], ...] = ()
        self._preemptions = 0
        self._decisions: list[tuple[int, bool]] = []  # (options, current_runnable) per decision

    def start_schedule(self) -> bool:
        """Pop the next prefix; False when the space (or the cap) is exhausted."""
        if not self._queue:
            self.complete = True
            return False
        if self.explored >= self.max_schedules:
            return False
        self._preemptions, _, self._prefix = heapq.heappop(self._queue)
        self._decisions = []
        return True

    def choose(self, step: int, options: Sequence[Option], current_runnable: bool) -> int:
        """Replay the prefix, then take option 0."""
        position = len(self._decisions)
        self._decisions.append((len(options), current_runnable))
        if position < len(self._prefix):
            choice, expected = self._prefix[position]
            if expected != len(options):
                raise ExplorerError(
                    f"the scenario is not deterministic: decision {position} (step {step}) "
                    f"had {expected} options when first run and {len(options)} now"
                )
            return choice
        return 0

    def end_schedule(self, trace: Sequence[StepRecord], failed: bool) -> None:
        """Count the run and queue the alternatives of the decisions after its prefix.

        A failed run's alternatives are queued too (the decisions it met
        before failing), so that exploring on after a failure (as
        ``Explorer.minimize`` does) misses no schedule.
        """
        self.explored += 1
        self.by_preemptions[self._preemptions] += 1
        if len(self._decisions) < len(self._prefix) and not failed:
            raise ExplorerError(
                f"the scenario is not deterministic: a prefix of {len(self._prefix)} "
                f"decisions met only {len(self._decisions)}"
            )
        base = list(self._prefix)
        for position in range(len(base), len(self._decisions)):
            options, current_runnable = self._decisions[position]
            cost = self._preemptions + (1 if current_runnable else 0)
            if cost <= self.max_preemptions:
                for choice in range(1, options):
                    prefix = (*base, (choice, options))
                    heapq.heappush(self._queue, (cost, self._order, prefix))
                    self._order += 1
            base.append((0, options))

    def describe(self) -> str:
        return f"DFSChooser(max_preemptions={self.max_preemptions})"


class PCTChooser:
    """Probabilistic concurrency testing (Burckhardt et al., ASPLOS 2010).

    Args:
        seed: the seed; run *i* uses ``random.Random(f"{seed}/{i}")``, so a
            failure is reproducible from ``(seed, i)`` as well as from its
            replay string.
        depth: the bug depth *d* aimed at: ``d - 1`` priority-change points.
        runs: schedules per ``Explorer.run``.
        steps_hint: the initial estimate *k* of a run's length in steps
            (change points are drawn in ``[1, k]``); it grows to the longest
            run seen, as shuttle does.

    Each thread gets a random priority when first seen (all above ``depth``);
    the highest-priority runnable thread runs; at the i-th change point the
    thread chosen to run is demoted to priority ``depth - i``.

    Attributes:
        explored: schedules run so far.
    """

    #: ``choose`` may run on any thread of the run (see the module docstring).
    choose_anywhere = True

    def __init__(self, seed: int, depth: int = 3, *, runs: int = 100, steps_hint: int = 200):
        if depth < 1:
            raise ValueError("depth must be >= 1")
        self.seed = seed
        self.depth = depth
        self.runs = runs
        self._k = steps_hint
        self.explored = 0
        self._rng = random.Random(0)
        self._priority: dict[int, float] = {}
        self._changes: list[int] = []

    def start_schedule(self) -> bool:
        """Draw the priorities' seed and the change points of the next run."""
        if self.explored >= self.runs:
            return False
        self._rng = random.Random(f"{self.seed}/{self.explored}")
        self._priority = {}
        count = min(self.depth - 1, self._k)
        self._changes = sorted(self._rng.sample(range(1, self._k + 1), count))
        return True

    def choose(self, step: int, options: Sequence[Option], current_runnable: bool) -> int:
        """Run the highest-priority option, demoting it at a change point."""
        for option in options:
            if option.thread not in self._priority:
                self._priority[option.thread] = self.depth + self._rng.random()
        best = max(range(len(options)), key=lambda i: self._priority[options[i].thread])
        while self._changes and self._changes[0] <= step:
            # The i-th change point (i = 1 .. depth-1) demotes to depth - i,
            # below every initial priority.  A change point that fell on a
            # forced step applies at the next decision.
            self._changes.pop(0)
            i = self.depth - 1 - len(self._changes)
            self._priority[options[best].thread] = float(self.depth - i)
            best = max(range(len(options)), key=lambda i: self._priority[options[i].thread])
        return best

    def end_schedule(self, trace: Sequence[StepRecord], failed: bool) -> None:
        """Count the run; grow the step estimate."""
        self.explored += 1
        self._k = max(self._k, len(trace))

    def describe(self) -> str:
        return f"PCTChooser(seed={self.seed}, depth={self.depth})"
