"""The controller: real threads, exactly one of them running at a time.

Every thread of a run is a real ``threading.Thread`` (so ``threading.get_ident()``
and everything the core does with threads stays valid), but it may run
scheduled code only while it holds "the turn".  A thread gives the turn away
at every scheduling point (``park``): it records the operation it is about to
perform (its *pending* operation) and the controller picks which thread
performs its pending operation next.

Design, and why:

* **The decision is made where it is cheap.**  When only one thread can run
  (a *forced* step: the others are blocked, finished, or not yet started and
  nobody else is runnable), the parking thread takes the step itself and, if
  the runnable thread is itself, does not switch at all.  Only a real choice
  (two or more runnable threads) goes to the controlling thread, the test's
  own main thread, because a ``HypothesisChooser`` must draw there
  (Hypothesis keeps its build context per thread).
* **A thread that cannot run is never released.**  A pending lock acquisition
  is runnable only if the lock is free or already the thread's own; a join
  only once its target finished; a ``select()`` without timeout only when a
  descriptor is ready; a wait for a completion only once it is over.  So the
  explorer never lets a thread block for real inside scheduled code, and
  "nobody runnable while somebody is alive" is exactly a deadlock.
* **Every wait is bounded.**  Parked threads wait for the turn in slices of
  ``POLL_SECONDS`` and leave (raising ``Aborted``) once the run is closed; the
  controlling thread has a watchdog: a thread that reaches no scheduling point
  for ``watchdog`` seconds is blocked outside the explorer's control (a real
  lock, ``Event.wait``, ``time.sleep``), which is reported with its stack.
* **Abandoning a run unwinds its threads.**  After a failure every parked
  thread is given the turn once more, in turn, and its ``park`` raises
  ``Aborted`` (a ``BaseException``, so the core's ``except Exception`` clauses
  do not catch it); every later ``park`` of an unwinding thread raises it
  again, so even a ``finally`` clause that loops on scheduling points ends.

Thread-safety, with or without the GIL
--------------------------------------

There are two kinds of shared state, and each has one lock:

* **The controller's own state** (who holds the turn, every thread's pending
  operation and finished flag, the step count and trace, the failure, the
  aborting/closed flags, the chooser's error, the thread list) is guarded by
  ``Controller._mutex``, a plain ``threading.Lock``.  Every read and every
  write happens with it held, by whichever thread makes it.
* **The world of the run** (``SchedLock`` owners, ``Completion`` holders,
  fake sockets and selectors, the fake clock, the choosers' per-run state,
  the scenario's own objects) is guarded by *the turn*: a logical lock that
  exactly one thread holds at a time, handed on under ``_mutex``.  A thread
  touches the world only between receiving the turn (seeing
  ``_turn is me`` under the mutex) and handing it on (assigning ``_turn``
  under the mutex), so every hand-off is a release of ``_mutex`` by the old
  holder followed by an acquisition by the new one: the happens-before edge
  that makes the old holder's writes visible to the new holder.

The turn is an explicit field, ``_turn`` (a ``ManagedThread``, or None for
the controlling thread), and waiting for it is a ``threading.Condition`` wait
on that predicate: one condition per managed thread and one for the
controlling thread, all sharing ``_mutex``, so a hand-off wakes exactly the
thread that receives the turn.  An earlier version used bare locks as binary
semaphores ("release my wake lock to give you the turn") and checked
``thread.finished`` to decide that an unwinding thread had handed the turn
back.  With the GIL the window between a thread setting ``finished`` and
releasing the controller's lock was a few bytecodes and never hit; without
it the controlling thread saw ``finished``, gave the turn to the next thread
while the first hand-back was still pending, and the second hand-back
released an unlocked lock (``RuntimeError: release unlocked lock``).  With
the predicate there is nothing to count: handing the turn back is an
assignment, and a thread hands on only a turn it holds (``_turn is me``).

Rules that keep this deadlock-free and bounded:

* ``_mutex`` is never held across a blocking call: no join, no sleep, no
  wait other than ``Condition.wait`` (which releases it).  The chooser is
  called with it held: choosing is pure computation and must not call into
  the run.  So re-acquiring the mutex after a ``Condition.wait`` waits at
  most for one short critical section.
* The mutex is not re-entrant, and nothing called with it held (chooser,
  ``Op.waits_for``, reports) calls back into the controller.
* A thread the watchdog gave up on (*stuck*) loses the turn: the controlling
  thread takes it back and sets ``aborting`` in the same critical section, so
  if the stuck thread ever returns, its next ``park`` raises ``Aborted`` and
  its end hands nothing on.  Between its return and that ``park`` it runs
  outside the explorer's control, as it did while stuck; the run is already
  abandoned (reported as ``ExplorerError``) and only the explorer's own state
  must stay consistent, which the mutex guarantees.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Final, NamedTuple

__all__ = [
    "Aborted",
    "Controller",
    "ExplorerError",
    "ManagedThread",
    "Op",
    "Option",
    "StepRecord",
    "Wait",
]

#: How long a parked thread, or the controlling thread, waits on its condition
#: before it checks again whether the run was closed or the watchdog expired
#: (seconds).  Only bounds how late a leftover thread notices; hand-offs
#: notify the receiving thread and never wait for it.
POLL_SECONDS: Final = 0.5

#: Bound on joining a managed thread's OS thread after it finished its target
#: (seconds).  It has nothing left to do but leave ``Thread.run``.
JOIN_SECONDS: Final = 10.0


class ExplorerError(RuntimeError):
    """The explorer could not do its job (not a bug found in the code under test).

    Raised for: a scheduling point reached by a thread the explorer does not
    manage; a scenario that is not deterministic (a replayed prefix met a
    different number of runnable threads); a thread blocked outside the
    explorer's control (real locks, ``Event.wait``, ``sleep``, ``EventBase.stop``).
    """


class Aborted(BaseException):
    """Raised inside a managed thread to unwind it when its run is abandoned.

    A ``BaseException`` so that ``except Exception`` in the code under test
    does not swallow it.  Never escapes a managed thread.
    """


class Wait(NamedTuple):
    """Why a pending operation cannot run yet.

    Attributes:
        what: a description, e.g. ``"listener.lock#1 held by 'loop'"``.
        holder: the thread that must act first (an edge of the wait-for
            graph), or None when nobody in particular (I/O, time).
    """

    what: str
    holder: ManagedThread | None


class Op:
    """An operation a thread is about to perform at a scheduling point.

    Subclasses override ``waits_for`` for operations that can block and
    ``describe`` for their text in schedule tables.

    Attributes:
        kind: a short name, e.g. ``"acquire"``, ``"listener.dispatched"``.
    """

    __slots__ = ("kind",)

    def __init__(self, kind: str) -> None:
        """Make an operation of kind *kind* that never blocks."""
        self.kind = kind

    def waits_for(self, thread: ManagedThread) -> Wait | None:
        """Return why *thread* cannot perform this operation now, or None if it can."""
        return None

    def describe(self) -> str:
        """Return the operation as a line of a schedule table."""
        return self.kind


class _StartOp(Op):
    __slots__ = ()

    def __init__(self) -> None:
        super().__init__("start")


class ManagedThread:
    """The controller's record of one thread of a run.

    Attributes:
        index: creation order in the run, from 0 (stable across replays).
        name: the thread's name, as in schedule tables.
        pending: the operation it will perform when next released (None while it runs).
        finished: its target returned or raised.
        error: what its target raised (not ``Aborted``), with
            ``error_traceback`` formatted, or None.

    Thread-safety: every attribute but ``index``, ``name`` and ``wake`` (set
    before the thread is published) is read and written with the
    controller's mutex held.
    """

    __slots__ = (
        "error",
        "error_traceback",
        "finished",
        "ident",
        "index",
        "name",
        "os_thread",
        "pending",
        "wake",
    )

    def __init__(self, index: int, name: str, mutex: threading.Lock) -> None:
        """Make the record; the thread starts parked, its pending operation "start".

        Args:
            index: creation order in the run.
            name: the thread's name.
            mutex: the controller's mutex; ``wake``, the condition this thread
                waits on for the turn, is bound to it.
        """
        self.index = index
        self.name = name
        self.wake = threading.Condition(mutex)
        self.pending: Op | None = _StartOp()
        self.finished = False
        self.error: BaseException | None = None
        self.error_traceback = ""
        self.ident: int | None = None
        self.os_thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"<ManagedThread {self.name!r} #{self.index}>"


class Option(NamedTuple):
    """A runnable thread offered to a chooser.

    Attributes:
        thread: the thread's creation index (stable across replays).
        name: its name.
    """

    thread: int
    name: str


class StepRecord(NamedTuple):
    """One step of a schedule: which thread performed which operation.

    Attributes:
        number: the step number, from 1.
        thread: the name of the thread that performed it.
        op: the operation (``op.kind``, ``op.describe()``).
        options: how many threads were runnable (1: a forced step).
        choice: the index chosen among them (0: the thread that ran last
            if it was runnable, else the first runnable in creation order).
        preempted: the thread that ran last could have gone on and was
            stopped (a preemption, as CHESS counts them).
        switched: another thread than the last one performed this step.
    """

    number: int
    thread: str
    op: Op
    options: int
    choice: int
    preempted: bool
    switched: bool

    @property
    def kind(self) -> str:
        """The operation's kind, e.g. ``"acquire"`` or ``"listener.dispatched"``."""
        return self.op.kind

    @property
    def text(self) -> str:
        """The operation as shown in schedule tables (built on demand: cheap steps)."""
        return self.op.describe()


class Failure(NamedTuple):
    """Why a run failed: *kind* (``deadlock``, ``livelock``, ``exception``,
    ``stuck``) and a description."""

    kind: str
    message: str
    error: BaseException | None = None


#: ``choose(step, options, current_runnable) -> index``: called for every step
#: with two or more runnable threads (see ``Controller``'s *choose_anywhere*).
ChooseFn = Callable[[int, Sequence[Option], bool], int]


class Controller:
    """Runs one schedule: managed threads released one at a time.

    Args:
        choose: asked which runnable thread performs the next step whenever
            there is more than one (``ChooseFn``); option 0 is the thread that
            ran last if it can go on.  Called in the controlling thread, or,
            with *choose_anywhere*, in whichever thread reaches the decision
            (no thread switch when the answer is "go on").  Always called
            with the controller's mutex held: it must not block or call into
            the run.
        max_steps: the step budget; a run that exceeds it is a livelock.
        watchdog: seconds without any step before a running thread counts
            as blocked outside the explorer.
        choose_anywhere: *choose* may be called from any thread of the run
            (not for Hypothesis, which draws on the test's thread only).

    Thread-safety: ``run`` in the controlling thread; ``park``, ``me``,
    ``register`` and the thread functions in managed threads (the one holding
    the turn); ``steps_taken``, ``trace_copy``, ``outcome`` and
    ``manages_caller`` in any thread.  The state is guarded by ``_mutex``
    (see the module docstring); the public attributes below are for reading
    once ``run`` has returned.

    Attributes:
        threads: every thread of the run, in creation order.
        current: the thread that performed the last step (option 0 of the
            next decision, if it can go on).
        step: steps taken so far.
        trace: the steps taken so far.
        failure: why the run failed, or None.
        aborting: the run is being abandoned (threads unwind).
        closed: the run is over; a thread still waiting for the turn leaves.
        chooser_error: what the chooser raised in a managed thread, re-raised
            by ``run``.
    """

    def __init__(
        self, choose: ChooseFn, *, max_steps: int, watchdog: float, choose_anywhere: bool = False
    ) -> None:
        self._choose = choose
        self._choose_anywhere = choose_anywhere
        self.max_steps = max_steps
        self.watchdog = watchdog
        # Guards every attribute below, every ManagedThread's mutable
        # attributes, and, through the turn, the world of the run.
        self._mutex = threading.Lock()
        # The controlling thread waits here for the turn to come back.
        self._main_wake = threading.Condition(self._mutex)
        # Who may run: a managed thread, or None for the controlling thread.
        self._turn: ManagedThread | None = None
        # A thread the watchdog gave up on: it lost the turn (see _await_turn_back).
        self._stuck: ManagedThread | None = None
        self.chooser_error: BaseException | None = None
        self.threads: list[ManagedThread] = []
        self.current: ManagedThread | None = None
        self.step = 0
        self.trace: list[StepRecord] = []
        self.failure: Failure | None = None
        self.aborting = False
        self.closed = False
        self._started = False
        # Which ManagedThread the calling OS thread is: thread-local, so no
        # shared map from idents (which the OS reuses) to threads is needed.
        self._local = threading.local()

    # ------------------------------------------------------------ threads

    def _caller(self) -> ManagedThread | None:
        thread: ManagedThread | None = getattr(self._local, "thread", None)
        return thread

    def me(self) -> ManagedThread:
        """Return the managed thread that is calling.

        Raises:
            ExplorerError: the caller is not a thread of this run.
        """
        thread = self._caller()
        if thread is None:
            raise ExplorerError(
                f"thread {threading.current_thread().name!r} reached a scheduling point of a "
                "schedule-explorer runtime but is not one of its threads: objects built on a "
                "SchedRuntime must only be used inside Explorer.run(), by threads it made"
            )
        return thread

    def manages_caller(self) -> bool:
        """Whether the calling thread is a thread of this run and the run is not over.

        Thread-safety: any thread.
        """
        if self._caller() is None:
            return False
        with self._mutex:
            return not self.closed

    def register(self, name: str, os_thread: threading.Thread) -> ManagedThread:
        """Add a thread to the run, parked before its first step ("start").

        Called by whoever holds the turn (or by the controlling thread for the
        first thread, before ``run``), just before the OS thread is started.

        Raises:
            ExplorerError: called by a thread outside the run once it started.
            Aborted: the run is being abandoned.
        """
        caller = self._caller()
        with self._mutex:
            if self._started and caller is None:
                raise ExplorerError("threads of a run may only be started by threads of the run")
            if self.aborting:
                raise Aborted
            if self._started and self._turn is not caller:
                raise ExplorerError(f"thread {name!r} started by a thread not holding the turn")
            thread = ManagedThread(len(self.threads), name, self._mutex)
            thread.os_thread = os_thread
            self.threads.append(thread)
            return thread

    def thread_main(self, thread: ManagedThread, target: Callable[[], object]) -> None:
        """The body of a managed OS thread: wait for the turn, run *target*, hand on."""
        self._local.thread = thread
        error: BaseException | None = None
        try:
            with self._mutex:
                thread.ident = threading.get_ident()
                self._wait_turn(thread)
                thread.pending = None
                aborting = self.aborting
            if aborting:
                raise Aborted
            target()
        except Aborted:
            pass
        except BaseException as exc:  # reported as the run's failure
            error = exc
        finally:
            self._finished(thread, error)

    # ---------------------------------------------------------- the turn

    def park(self, op: Op) -> None:
        """Give up the turn before performing *op*; return when chosen to perform it.

        Raises:
            Aborted: the run is being abandoned (unwind).
            ExplorerError: called by a thread that is not part of this run, or
                by one that does not hold the turn.
        """
        me = self.me()
        with self._mutex:
            if self.aborting:
                raise Aborted
            if self._turn is not me:
                # Only reachable through a bug of the explorer itself: every
                # way of losing the turn outside a hand-off sets aborting.
                raise ExplorerError(f"thread {me.name!r} ran without holding the turn")
            me.pending = op
            chosen = self._decide_here()
            if chosen is me:
                me.pending = None
                return
            self._hand_over(chosen)
            self._wait_turn(me)
            me.pending = None
            if self.aborting:
                raise Aborted

    def _decide_here(self) -> ManagedThread | None:
        """In a managed thread, mutex held: take the next step here if no trip to
        the controlling thread is needed; return who performs it, or None to
        ask the controlling thread (a Hypothesis decision, a failure, the end)."""
        if self.failure is not None:
            return None
        runnable = self._runnable()
        if len(runnable) == 1:
            # A forced step: nothing to choose.
            chosen = runnable[0]
            return chosen if self._take_step(chosen, [chosen], 0, False) else None
        if not runnable or not self._choose_anywhere:
            return None
        try:
            return self._decide()
        except BaseException as exc:  # re-raised by the controlling thread
            self.chooser_error = exc
            return None

    def _finished(self, me: ManagedThread, error: BaseException | None) -> None:
        # Formatted before taking the mutex: formatting reads source files.
        text = "".join(traceback.format_exception(error)) if error is not None else ""
        with self._mutex:
            me.finished = True
            me.pending = None
            if error is not None:
                me.error = error
                me.error_traceback = text
            if self._turn is not me:
                # It never received the turn (the run closed before its
                # start), or the watchdog took it away (stuck): there is
                # nothing to hand on.  Whoever holds the turn goes on.
                return
            if error is not None and not self.aborting and self.failure is None:
                self.failure = Failure(
                    "exception",
                    f"thread {me.name!r} raised {type(error).__name__}: {error}\n" + text,
                    error,
                )
            if self.aborting or self.failure is not None:
                self._hand_over(None)
                return
            self._hand_over(self._decide_here())

    def _hand_over(self, thread: ManagedThread | None) -> None:
        """Mutex held, by the holder of the turn: give the turn to *thread*
        (None: the controlling thread) and wake it.

        The turn is the ``_turn`` field; its receiver waits for the predicate
        ``_turn is me``, so a notification that arrives before it waits is
        not lost, and handing a turn over twice is impossible to miss: only
        the holder hands it on, and holding is checked, not counted.
        """
        self._turn = thread
        if thread is None:
            self._main_wake.notify()
        else:
            self.current = thread
            thread.wake.notify()

    def _wait_turn(self, me: ManagedThread) -> None:
        """Mutex held: wait until *me* holds the turn.

        Raises:
            Aborted: the run was closed first.
        """
        while self._turn is not me:
            if self.closed:
                raise Aborted
            me.wake.wait(POLL_SECONDS)

    # ------------------------------------------------------- scheduling
    # Everything below runs with the mutex held.

    def _runnable(self) -> list[ManagedThread]:
        runnable = []
        for thread in self.threads:
            op = thread.pending
            if not thread.finished and op is not None and op.waits_for(thread) is None:
                runnable.append(thread)
        return runnable

    def _take_step(
        self, chosen: ManagedThread, ordered: Sequence[ManagedThread], choice: int, cur_ok: bool
    ) -> bool:
        """Record that *chosen* performs its pending operation as the next step.

        Returns False (and records a livelock) once the step budget is spent.
        """
        if self.step >= self.max_steps:
            self.failure = Failure(
                "livelock",
                f"the step budget ({self.max_steps} steps) is spent and threads "
                f"{[t.name for t in self.threads if not t.finished]} are still running: a "
                "livelock, or a scenario that needs a larger max_steps",
            )
            return False
        self.step += 1
        op = chosen.pending
        assert op is not None
        previous = self.current
        # A tuple, built positionally: this runs at every step.
        self.trace.append(
            StepRecord(
                self.step,
                chosen.name,
                op,
                len(ordered),
                choice,
                cur_ok and chosen is not previous,
                chosen is not previous,
            )
        )
        return True

    def _decide(self) -> ManagedThread | None:
        """Pick the next thread, or record why none (mutex held, turn held)."""
        alive = [t for t in self.threads if not t.finished]
        if not alive:
            return None
        runnable = self._runnable()
        if not runnable:
            self.failure = Failure("deadlock", self._deadlock_report(alive))
            return None
        current = self.current
        cur_ok = current is not None and current in runnable
        if cur_ok:
            assert current is not None
            ordered = [current, *(t for t in runnable if t is not current)]
        else:
            ordered = runnable
        if len(ordered) == 1:
            choice = 0
        else:
            options = [Option(t.index, t.name) for t in ordered]
            choice = self._choose(self.step + 1, options, cur_ok)
            if not 0 <= choice < len(ordered):
                raise ExplorerError(f"chooser returned {choice} for {len(ordered)} options")
        chosen = ordered[choice]
        if not self._take_step(chosen, ordered, choice, cur_ok):
            return None
        return chosen

    def _deadlock_report(self, alive: Sequence[ManagedThread]) -> str:
        waits: dict[ManagedThread, Wait] = {}
        for thread in alive:
            op = thread.pending
            wait = op.waits_for(thread) if op is not None else None
            if wait is not None:
                waits[thread] = wait
        lines = [f"no thread can run, and {len(alive)} are alive"]
        cycle = _find_cycle(waits)
        if cycle:
            lines.append("wait-for cycle:")
            for thread in cycle:
                lines.append(f"  {thread.name!r} waits for {waits[thread].what}")
        else:
            lines.append(
                "no wait-for cycle: the threads wait for I/O or time nobody will provide "
                "(a loop thread nobody stopped? end it with loopexit()/loopbreak() and join it)"
            )
        lines.append("each thread's pending operation:")
        for thread in alive:
            op = thread.pending
            text = op.describe() if op is not None else "(running)"
            wait = waits.get(thread)
            why = f"  [blocked: {wait.what}]" if wait is not None else ""
            lines.append(f"  {thread.name:<10} {text}{why}")
        return "\n".join(lines)

    # ------------------------------------------------------------- reading

    def steps_taken(self) -> int:
        """The number of steps taken so far.  Any thread."""
        with self._mutex:
            return self.step

    def trace_copy(self) -> list[StepRecord]:
        """A copy of the steps taken so far.  Any thread."""
        with self._mutex:
            return list(self.trace)

    def outcome(self) -> tuple[list[StepRecord], Failure | None]:
        """The steps taken and the failure (None if the run passed).  Any thread."""
        with self._mutex:
            return list(self.trace), self.failure

    # ------------------------------------------------------------- driving

    def run(self, first: ManagedThread) -> None:
        """Drive the run whose first thread, *first*, is registered and started.

        Returns when every thread finished or the run failed (``failure`` set;
        the threads are unwound).  An exception from the chooser propagates
        after the threads are unwound.

        Raises:
            ExplorerError: a thread stayed blocked outside the explorer and
                could not be unwound.
        """
        with self._mutex:
            self._started = True
        try:
            self._serve()
        finally:
            self._shutdown()

    def _serve(self) -> None:
        with self._mutex:
            while True:
                if self.chooser_error is not None:
                    raise self.chooser_error
                if self.failure is not None:
                    return
                chosen = self._decide()
                if chosen is None:
                    return
                self._hand_over(chosen)
                if not self._await_turn_back():
                    return

    def _await_turn_back(self) -> bool:
        """Mutex held: wait until a managed thread hands the turn back to the
        controlling thread; False if the holder is stuck (then the turn is
        taken back from it and the run is aborting)."""
        last_step = self.step
        last_change = time.monotonic()
        while self._turn is not None:
            self._main_wake.wait(POLL_SECONDS)
            if self._turn is None:
                break
            if self.step != last_step:
                last_step, last_change = self.step, time.monotonic()
            elif time.monotonic() - last_change > self.watchdog:
                self.failure = Failure("stuck", self._stuck_report(self._turn))
                self._take_turn_back()
                return False
        return True

    def _take_turn_back(self) -> None:
        """Mutex held: the holder of the turn is lost to the explorer (stuck, or
        ``_serve`` left abnormally): the controlling thread takes the turn.

        ``aborting`` is set in the same critical section, so if that thread
        comes back its next ``park`` raises ``Aborted`` instead of running on
        next to the threads being unwound, and its end hands nothing on.
        """
        self._stuck = self._turn
        self._turn = None
        self.aborting = True

    def _stuck_report(self, thread: ManagedThread) -> str:
        frame = sys._current_frames().get(thread.ident) if thread.ident is not None else None
        stack = "".join(traceback.format_stack(frame)) if frame is not None else "  (gone)\n"
        return (
            f"thread {thread.name!r} reached no scheduling point for {self.watchdog} s: it "
            "is blocked outside the explorer's control (a real lock, Event.wait, time.sleep, "
            "EventBase.stop() ...), which a scheduled scenario must not do.  It is at:\n" + stack
        )

    def _shutdown(self) -> None:
        """Unwind every thread still alive (after a failure), then join them all."""
        with self._mutex:
            if self._turn is not None:
                self._take_turn_back()  # _serve left while a thread held the turn
            if any(not t.finished for t in self.threads):
                self.aborting = True
                for thread in list(self.threads):
                    if thread.finished or thread is self._stuck:
                        continue
                    # Parked (or not yet started): give it the turn; its park
                    # raises Aborted, it unwinds, and _finished hands the turn
                    # back.  Waiting for the turn, not for `finished`, is what
                    # keeps one hand-back from being taken for the next one.
                    self._hand_over(thread)
                    deadline = time.monotonic() + self.watchdog
                    while self._turn is not None:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            self._take_turn_back()  # blocked while unwinding
                            break
                        self._main_wake.wait(min(POLL_SECONDS, remaining))
            self.closed = True
            threads = list(self.threads)
            failure = self.failure
            for thread in threads:
                thread.wake.notify_all()  # a leftover waiter leaves at once
        # Joined without the mutex: a thread still on its way out may need it.
        leaked = []
        for thread in threads:
            os_thread = thread.os_thread
            if os_thread is None or os_thread.ident is None:
                continue
            os_thread.join(JOIN_SECONDS)
            if os_thread.is_alive():
                leaked.append(thread.name)
        if leaked:
            detail = failure.message if failure is not None else ""
            raise ExplorerError(f"threads {leaked} could not be unwound\n{detail}")


def _find_cycle(waits: dict[ManagedThread, Wait]) -> list[ManagedThread]:
    """Return a cycle of the wait-for graph (each thread waits for <= 1 holder), or []."""
    for start in waits:
        seen: list[ManagedThread] = []
        node: ManagedThread | None = start
        while node is not None and node in waits and node not in seen:
            seen.append(node)
            node = waits[node].holder
        if node is not None and node in seen:
            return seen[seen.index(node) :]
    return []
