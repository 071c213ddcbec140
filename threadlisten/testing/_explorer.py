"""``Explorer``: run a scenario under a chooser, one schedule after another.

A *scenario* is a function ``scenario(rt)`` taking a ``SchedRuntime``.  It
runs as the run's first managed thread, called ``"main"``; it builds its
objects on ``rt`` (``rt.new_base()``, ``rt.listening_socket()``), starts
threads with ``rt.spawn()`` (or ``EventBase.start_thread()``), joins them, and
asserts.  A run fails when:

* a thread raises (an ``assert`` in the scenario, or an error of the code under test);
* nobody can run while somebody is alive: a **deadlock**, reported with the
  wait-for cycle and every thread's pending operation;
* the step budget is spent: a **livelock** (or a scenario needing a larger budget);
* an ERROR record reaches the ``threadlisten`` logger (the core logs what a
  callback raised), unless ``allow_error_logs``;
* with ``lock_checking``, the lock checker recorded an error.

The failure is raised as ``ScheduleFailure`` with the schedule as a table
(step, thread, operation; preemptions marked) and its replay string.

Thread-safety: an ``Explorer`` is used by one thread (the test's).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from threadlisten.listener import Listener
from threadlisten.testing._choosers import (
    Chooser,
    DFSChooser,
    ReplayChooser,
    format_schedule,
    parse_schedule,
)
from threadlisten.testing._controller import (
    Controller,
    ExplorerError,
    Failure,
    Option,
    StepRecord,
)
from threadlisten.testing._sched_runtime import SchedRuntime, SchedThread

if TYPE_CHECKING:
    from threadlisten.debug import LockDebugError

__all__ = ["Explorer", "Report", "Scenario", "ScheduleFailure", "format_table"]

#: A scenario: runs as the thread "main" of each run.
Scenario = Callable[[SchedRuntime], object]

#: Default step budget per run.  The listener scenarios take 50-300 steps;
#: a run 30 times longer than that is going round in circles.
DEFAULT_MAX_STEPS: Final = 10_000

#: Default watchdog (seconds): a thread that reaches no scheduling point for
#: this long is blocked outside the explorer.  Far above any step (microseconds).
DEFAULT_WATCHDOG: Final = 10.0


def format_table(trace: Sequence[StepRecord]) -> str:
    """Return *trace* as a table: step, thread, operation.

    ``*`` marks a preemption (the previous thread could have gone on);
    ``>`` another switch of thread.  Forced steps (one runnable thread) show
    no option count; decisions show ``choice/options``.
    """
    width = max([6, *(len(s.thread) for s in trace)])
    lines = [f"  {'step':>5}    {'thread':<{width}}  {'choice':>6}  operation"]
    for s in trace:
        mark = "*" if s.preempted else (">" if s.switched else " ")
        choice = f"{s.choice}/{s.options}" if s.options > 1 else ""
        lines.append(f"  {s.number:>5} {mark}  {s.thread:<{width}}  {choice:>6}  {s.text}")
    return "\n".join(lines)


class ScheduleFailure(AssertionError):
    """A schedule made the scenario fail.  The message shows the minimal schedule found.

    Attributes:
        kind: ``"deadlock"``, ``"livelock"``, ``"exception"``,
            ``"error-log"`` or ``"lock-check"``.
        detail: what went wrong (wait-for cycle, traceback, records).
        trace: the steps of the failing run.
        schedule: its replay string (``ReplayChooser(schedule)`` replays it).
        preemptions: how many preemptions it has.
        schedules_run: how many schedules ran, this one included.
        error: the exception a thread raised (``kind == "exception"``), else None.
    """

    def __init__(
        self,
        kind: str,
        detail: str,
        trace: Sequence[StepRecord],
        *,
        chooser: str,
        schedules_run: int,
        error: BaseException | None = None,
    ) -> None:
        """Build the failure and its message."""
        self.kind = kind
        self.detail = detail
        self.trace = list(trace)
        self.schedule = format_schedule(trace)
        self.preemptions = sum(1 for s in trace if s.preempted)
        self.schedules_run = schedules_run
        self.error = error
        plural = "" if self.preemptions == 1 else "s"
        message = (
            f"schedule explorer: {kind} after {len(self.trace)} steps "
            f"(schedule {schedules_run} of {chooser})\n"
            f"{detail.rstrip()}\n\n"
            f"schedule ({self.preemptions} preemption{plural}; * preemption, > switch):\n"
            f"{format_table(self.trace)}\n\n"
            f'replay: ReplayChooser("{self.schedule}")'
        )
        super().__init__(message)


@dataclass
class Report:
    """What ``Explorer.run`` did.

    Attributes:
        chooser: the chooser's description.
        schedules: how many schedules ran.
        complete: the chooser exhausted its space (``DFSChooser`` within its
            bound); False for the probabilistic choosers and for capped runs.
        steps_total: steps over all schedules.
        steps_max: the longest schedule, in steps.
        seconds: wall time.
        by_preemptions: schedules per preemption count (``DFSChooser``).
        last_trace: the steps of the last schedule.
    """

    chooser: str
    schedules: int = 0
    complete: bool = False
    steps_total: int = 0
    steps_max: int = 0
    seconds: float = 0.0
    by_preemptions: dict[int, int] = field(default_factory=dict)
    last_trace: list[StepRecord] = field(default_factory=list)

    @property
    def schedules_per_second(self) -> float:
        """Schedules run per second of wall time."""
        return self.schedules / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        """One line for logs and docs."""
        tiers = ", ".join(f"{p}: {n}" for p, n in sorted(self.by_preemptions.items()))
        return (
            f"{self.chooser}: {self.schedules} schedules"
            f"{' (complete)' if self.complete else ''} in {self.seconds:.2f} s "
            f"({self.schedules_per_second:.0f}/s), steps max {self.steps_max}"
            + (f", by preemptions {{{tiers}}}" if tiers else "")
        )


class _ErrorRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class Explorer:
    """Run a scenario under controlled scheduling (loom/shuttle/CHESS style).

    Args:
        chooser: decides every step with two or more runnable threads
            (``HypothesisChooser``, ``DFSChooser``, ``PCTChooser``,
            ``ReplayChooser``).
        max_steps: the step budget of one run; exceeding it is a livelock.
        listener_class: the ``Listener`` subclass the runtime's
            ``listener_type`` returns (seeded bugs, instrumented listeners).
        lock_checking: run every schedule with ``threadlisten.debug``'s lock
            checker between the core and the explorer's locks.
        allow_error_logs: do not fail a run on ERROR records of the
            ``threadlisten`` logger.
        watchdog: seconds without a scheduling point after which the running
            thread counts as blocked outside the explorer (``ExplorerError``).

    Thread-safety: one thread uses an explorer; it becomes the controlling
    thread of each run.  libevent has no equivalent; see loom, shuttle, CHESS.
    """

    def __init__(
        self,
        chooser: Chooser,
        *,
        max_steps: int = DEFAULT_MAX_STEPS,
        listener_class: type[Listener] | None = None,
        lock_checking: bool = False,
        allow_error_logs: bool = False,
        watchdog: float = DEFAULT_WATCHDOG,
    ) -> None:
        self.chooser = chooser
        self.max_steps = max_steps
        self.listener_class = listener_class
        self.lock_checking = lock_checking
        self.allow_error_logs = allow_error_logs
        self.watchdog = watchdog

    def run(self, scenario: Scenario) -> Report:
        """Run *scenario* under every schedule the chooser asks for.

        One schedule for ``HypothesisChooser``/``ReplayChooser``; until the
        bounded space is exhausted for ``DFSChooser``; ``runs`` schedules for
        ``PCTChooser``.

        Returns:
            A ``Report`` (how many schedules, steps, time, preemption tiers).

        Raises:
            ScheduleFailure: a schedule failed; the first failing one is reported.
            ExplorerError: the explorer could not control the run (see its docstring).
            Any exception the chooser raises (e.g. Hypothesis's internal
            ``StopTest``), after the run's threads are unwound.
        """
        chooser = self.chooser
        report = Report(chooser.describe())
        start = time.perf_counter()
        try:
            while chooser.start_schedule():
                trace, failure = self._run_once(scenario)
                report.schedules += 1
                report.steps_total += len(trace)
                report.steps_max = max(report.steps_max, len(trace))
                report.last_trace = trace
                chooser.end_schedule(trace, failure is not None)
                if failure is not None:
                    raise ScheduleFailure(
                        failure.kind,
                        failure.message,
                        trace,
                        chooser=chooser.describe(),
                        schedules_run=report.schedules,
                        error=failure.error,
                    )
        finally:
            report.seconds = time.perf_counter() - start
        report.complete = bool(getattr(chooser, "complete", False))
        tiers = getattr(chooser, "by_preemptions", None)
        if tiers is not None:
            report.by_preemptions = dict(tiers)
        return report

    def minimize(
        self, scenario: Scenario, failure: ScheduleFailure, *, search_bound: int = 2
    ) -> ScheduleFailure:
        """Return a failure like *failure* whose schedule has as few preemptions as possible.

        Two passes, both replaying with this explorer's options:

        1. delta debugging over the schedule's choices: drop one non-zero
           choice (or lower it) at a time, replay leniently
           (``ReplayChooser(..., strict=False)``) and keep the change when the
           run still fails the same way (same kind; for exceptions, the same
           exception type), until no single change helps;
        2. if the result still has *p* preemptions, a ``DFSChooser`` bounded
           to ``min(p - 1, search_bound)`` preemptions looks for the same
           failure; DFS runs schedules in order of increasing preemptions, so
           the first one it finds has the fewest.

        So when ``p - 1 <= search_bound`` the result is minimal in preemptions
        (among failures of the same kind).  Hypothesis's shrinker works on its
        own choice sequence and can stop above that; this is the second pass.

        Args:
            scenario: the scenario that failed.
            failure: its failure, from any chooser.
            search_bound: the largest preemption bound of the DFS pass.

        Returns:
            The smallest failure found (*failure* itself if nothing smaller fails).

        Raises:
            ExplorerError: as ``run``.
        """
        best = failure
        improved = True
        while improved:
            improved = False
            choices = parse_schedule(best.schedule)
            candidates: list[dict[int, int]] = []
            for step in sorted(choices):
                candidates.append({k: v for k, v in choices.items() if k != step})
                if choices[step] > 1:
                    candidates.append({**choices, step: choices[step] - 1})
            for candidate in candidates:
                found = self._replay_failure(scenario, candidate)
                if found is not None and _same_failure(found, failure) and _smaller(found, best):
                    best = found
                    improved = True
                    break
        bound = min(best.preemptions - 1, search_bound)
        if bound < 0:
            return best
        searcher = self._with_chooser(DFSChooser(max_preemptions=bound))
        while True:
            try:
                searcher.run(scenario)
            except ScheduleFailure as found:
                if not _same_failure(found, failure):
                    continue  # another failure: the search goes on from the next schedule
                return found if _smaller(found, best) else best
            return best

    def _with_chooser(self, chooser: Chooser) -> Explorer:
        return Explorer(
            chooser,
            max_steps=self.max_steps,
            listener_class=self.listener_class,
            lock_checking=self.lock_checking,
            allow_error_logs=self.allow_error_logs,
            watchdog=self.watchdog,
        )

    def _replay_failure(
        self, scenario: Scenario, choices: dict[int, int]
    ) -> ScheduleFailure | None:
        try:
            self._with_chooser(ReplayChooser(choices, strict=False)).run(scenario)
        except ScheduleFailure as failure:
            return failure
        return None

    def _run_once(self, scenario: Scenario) -> tuple[list[StepRecord], Failure | None]:
        chooser = self.chooser

        def choose(step: int, options: Sequence[Option], current_runnable: bool) -> int:
            return chooser.choose(step, options, current_runnable)

        ctl = Controller(
            choose,
            max_steps=self.max_steps,
            watchdog=self.watchdog,
            choose_anywhere=bool(getattr(chooser, "choose_anywhere", False)),
        )
        rt = SchedRuntime(ctl, listener_class=self.listener_class, lock_checking=self.lock_checking)
        handler = _ErrorRecords()
        logger = logging.getLogger("threadlisten")
        logger.addHandler(handler)
        lock_errors_before = self._lock_error_count()
        try:
            main = SchedThread(ctl, lambda: scenario(rt), "main")
            main.start()
            ctl.run(ctl.threads[0])
        finally:
            logger.removeHandler(handler)
            rt.close()
        trace, failure = ctl.outcome()
        if failure is not None and failure.kind == "stuck":
            raise ExplorerError(failure.message)
        # The lock checker's own report first: its errors raised on the loop
        # thread are also logged by the core, but say more.
        if failure is None and self.lock_checking:
            new = self._lock_errors_since(lock_errors_before)
            if new:
                failure = Failure(
                    "lock-check",
                    "the lock checker reported:\n" + "\n".join(f"  [{e.check}] {e}" for e in new),
                    new[0],
                )
        if failure is None and handler.records and not self.allow_error_logs:
            failure = Failure(
                "error-log",
                "ERROR records on the 'threadlisten' logger (an exception in a callback?):\n"
                + "\n".join(_format_record(r) for r in handler.records),
            )
        return trace, failure

    def _lock_error_count(self) -> int:
        if not self.lock_checking:
            return 0
        from threadlisten.debug import errors

        return len(errors())

    def _lock_errors_since(self, count: int) -> list[LockDebugError]:
        from threadlisten.debug import errors

        return list(errors()[count:])


def _same_failure(a: ScheduleFailure, b: ScheduleFailure) -> bool:
    if a.kind != b.kind:
        return False
    return a.kind != "exception" or type(a.error) is type(b.error)


def _smaller(a: ScheduleFailure, b: ScheduleFailure) -> bool:
    """Fewer preemptions, then fewer steps, then lower choices."""
    key_a = (a.preemptions, len(a.trace), sorted(parse_schedule(a.schedule).items()))
    key_b = (b.preemptions, len(b.trace), sorted(parse_schedule(b.schedule).items()))
    return key_a < key_b


def _format_record(record: logging.LogRecord) -> str:
    text = f"  {record.levelname} {record.getMessage()}"
    if record.exc_info:
        text += "\n" + logging.Formatter().formatException(record.exc_info)
    return text
