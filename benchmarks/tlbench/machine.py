"""What the machine is, how busy it is, and which cores to pin to.

The server runs on one core and the load generator (with this harness) on
another, so they do not take turns on one CPU and the server's figure is its
own.  With a single usable core, nothing is pinned and the report says so.
"""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Cores:
    """The cores to pin to: ``server`` for the server, ``client`` for the
    harness and the load generator; ``None`` when pinning is not possible."""

    server: int | None
    client: int | None

    @property
    def pinned(self) -> bool:
        """Whether the server and the client get different cores."""
        return self.server is not None and self.client is not None


def choose_cores() -> Cores:
    """Pick two different cores from this process's affinity mask: the last
    two, so that with more than two cores neither is core 0, which takes most
    device interrupts on many machines (with exactly two, the server gets it;
    loopback traffic raises no device interrupts)."""
    if not hasattr(os, "sched_getaffinity"):
        return Cores(None, None)
    usable = sorted(os.sched_getaffinity(0))
    if len(usable) < 2:
        return Cores(None, None)
    return Cores(server=usable[-2], client=usable[-1])


def pin(pid: int, core: int | None) -> None:
    """Pin process *pid* (0: this one) to *core*; do nothing if *core* is None.

    Threads the process starts afterwards inherit the mask.
    """
    if core is not None and hasattr(os, "sched_setaffinity"):
        # A container may forbid it, or the process may have ended already:
        # the measurement then runs unpinned rather than not at all.
        with contextlib.suppress(OSError):
            os.sched_setaffinity(pid, {core})


def loadavg() -> tuple[float, float, float] | None:
    """Return the 1, 5 and 15 minute load averages, or None where unknown."""
    try:
        return os.getloadavg()
    except OSError:
        return None


def cpu_model() -> str:
    """Return the CPU's model name (Linux ``/proc/cpuinfo``), else the platform's guess."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def proc_cpu_seconds(pid: int) -> float | None:
    """Return the CPU time (user + system, seconds) process *pid* has used, from
    ``/proc/<pid>/stat``; None if it cannot be read (other systems, or gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # Fields 14 and 15 of stat(5) (utime, stime), counted from the state field.
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def ksoftirqd_pid(core: int | None) -> int | None:
    """Return the pid of the kernel thread that runs deferred softirqs on
    *core* (``ksoftirqd/N``, Linux), or None."""
    if core is None:
        return None
    name = f"ksoftirqd/{core}"
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as fh:
                if fh.read().strip() == name:
                    return int(entry)
        except OSError:
            continue
    return None


def task_cpu_ns(pid: int | None) -> int | None:
    """Return the CPU time of task *pid* (its main thread) in nanoseconds, from
    ``/proc/<pid>/schedstat``; None if unknown."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/schedstat") as fh:
            return int(fh.read().split()[0])
    except (OSError, ValueError):
        return None


def git_state(repo: str) -> dict[str, object]:
    """Return the commit of *repo* and whether its ``threadlisten/`` differs
    from it (the code measured), or ``{}`` when git cannot tell."""
    try:
        head = subprocess.run(
            ["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=30
        )
        dirty = subprocess.run(
            ["git", "-C", repo, "status", "--porcelain", "--", "threadlisten"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if head.returncode != 0:
        return {}
    return {"commit": head.stdout.strip(), "threadlisten_modified": bool(dirty.stdout.strip())}


def describe(cores: Cores) -> dict[str, object]:
    """Return the facts about this machine that go into the results."""
    try:
        with open("/proc/sys/net/core/somaxconn") as fh:
            somaxconn: int | None = int(fh.read())
    except OSError:
        somaxconn = None
    return {
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "pinned": {"server": cores.server, "client": cores.client},
        "somaxconn": somaxconn,
    }
