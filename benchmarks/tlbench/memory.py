"""Memory per idle listener: threadlisten against a bare socket and asyncio.

Each figure comes from a fresh process (``tlbench.memprobe``), so nothing
made by an earlier measurement is counted or reused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tlbench.procs import BENCH_DIR, REPO_ROOT

KINDS = ("socket", "tl-threadsafe", "tl-plain", "asyncio")
WHATS = ("heap", "rss")
#: Seconds one probe may take (it makes a few thousand sockets at most).
PROBE_TIMEOUT = 120.0


def probe(kind: str, count: int, what: str) -> float:
    """Return the bytes per listener of *kind* (*what*: ``heap`` or ``rss``).

    Raises:
        RuntimeError: the probe process failed.
    """
    env = dict(os.environ)
    env.pop("THREADLISTEN_LOCK_DEBUG", None)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), str(BENCH_DIR)])
    proc = subprocess.run(
        [sys.executable, "-m", "tlbench.memprobe", kind, str(count), what],
        capture_output=True,
        text=True,
        env=env,
        timeout=PROBE_TIMEOUT,
        cwd=BENCH_DIR,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"memprobe {kind} {what} failed: {proc.stderr.strip()[-300:]}")
    return float(json.loads(proc.stdout))
