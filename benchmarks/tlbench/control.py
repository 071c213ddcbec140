"""The cost of cross-thread control: threads calling the listener while it accepts.

threadlisten's point is that any thread may call ``enable``, ``disable``,
``set_cb`` (and ``free``) on a THREADSAFE listener while the loop thread
accepts.  This runs the THREADSAFE listener under the steady load generator
with 0, 1, 2, 4 and 8 extra threads calling it as fast as they can, and
reports both sides: control calls per second, and the accept rate meanwhile.

Two kinds of call, made flat out (the worst case) and, for ``cycle``, also
paced at ``PACED_RATE`` calls per second per thread (what an application
that reconfigures its listener often might do):

``cycle``
    ``disable(); enable(); set_cb(cb, arg)``: each cycle unregisters and
    re-registers the listening socket (two ``epoll_ctl``) and wakes the loop.
``set_cb``
    ``set_cb(cb, arg)`` alone: the lock and the state update, no selector work.
``spin``
    the baseline for the two above: a thread that runs Python flat out and
    never touches the listener.  What it costs the accept rate is the GIL's
    doing (the loop thread gives the GIL up at every system call and gets
    it back only when the spinning thread's switch interval ends), and any
    Python server on this interpreter pays it; what ``cycle`` and
    ``set_cb`` cost beyond it is the listener's.

Control threads that never stop are the worst case; they mostly measure the
GIL, which every call must hold, and the listener lock, which a call waits
for while a batch of accepts is in progress.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tlbench.machine import Cores
from tlbench.peers import Peer
from tlbench.procs import Launcher
from tlbench.steady import SteadyResult, Window, steady_round

#: Control threads to try; 0 is the baseline.
THREAD_COUNTS = (0, 1, 2, 4, 8)
OPS = ("cycle", "set_cb", "spin")
#: Calls per second per thread of the paced cases.
PACED_RATE = 1000.0
#: Thread counts of the paced cases.
PACED_THREADS = (1, 8)


@dataclass(frozen=True)
class ControlCase:
    """One configuration: the kind of call and how many threads make it."""

    op: str
    threads: int
    rate: float = 0.0  # calls per second per thread; 0: flat out

    @property
    def key(self) -> str:
        """A name for the results: ``cycle/4``, or ``cycle/8@1000`` when paced."""
        paced = f"@{self.rate:.0f}" if self.rate else ""
        return f"{self.op}/{self.threads}{paced}"


def cases(
    thread_counts: tuple[int, ...] = THREAD_COUNTS, paced: tuple[int, ...] = PACED_THREADS
) -> list[ControlCase]:
    """Return the configurations to run: one baseline, each op x threads flat
    out, then ``cycle`` paced at ``PACED_RATE`` for the *paced* thread counts."""
    out = [ControlCase("none", 0)] if 0 in thread_counts else []
    out += [ControlCase(op, n) for op in OPS for n in thread_counts if n > 0]
    out += [ControlCase("cycle", n, PACED_RATE) for n in paced]
    return out


def control_round(
    launcher: Launcher, peer: Peer, cores: Cores, loadgen: Path, window: Window, case: ControlCase
) -> SteadyResult:
    """Measure one window of *case* on the THREADSAFE listener *peer*."""
    args: tuple[str, ...] = ()
    if case.threads:
        args = (
            "--control-threads",
            str(case.threads),
            "--control-op",
            case.op,
            "--control-rate",
            str(case.rate),
        )
    # A window with no accept is a result here.  Threads that never block
    # share the server's one core with the loop thread, which then falls
    # behind the load: the backlog fills, the kernel drops SYNs, and every
    # connect of the load generator waits for the 1 s SYN retransmission,
    # during which the loop, having drained the queue, waits in select().  A
    # short window (--quick: 0.2 s) can fall in such a pause (seen on 3.13t,
    # where the control threads run without a GIL to share).
    return steady_round(launcher, peer, cores, loadgen, window, args, allow_idle=True)
