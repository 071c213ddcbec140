"""Compile the C programs (servers and load generator) on demand.

Binaries go to a cache directory outside the repository
(``$XDG_CACHE_HOME/threadlisten-bench``, else ``~/.cache/threadlisten-bench``),
named by a hash of the source, the shared header, the flags and the compiler's
version, so an edit or a new compiler rebuilds and nothing is built twice.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

CSRC = Path(__file__).parent / "csrc"

#: -O2: what a packaged C server would ship with; -pthread: the servers' and
#: the load generator's threads.
CFLAGS = ("-O2", "-pthread", "-Wall", "-Wextra")

#: Seconds a single compile may take before it counts as failed.
COMPILE_TIMEOUT = 120.0


class BuildError(Exception):
    """A C program could not be built; the message says why and what to do."""


@dataclass(frozen=True)
class CProgram:
    """One C program: its source file under ``csrc/`` and extra linker flags."""

    name: str
    source: str
    libs: tuple[str, ...] = ()
    #: Shown when the build fails for want of a library.
    hint: str = ""


EPOLL_SERVER = CProgram("epoll_server", "epoll_server.c")
LIBEVENT_SERVER = CProgram(
    "libevent_server",
    "libevent_server.c",
    ("-levent",),
    "needs libevent's headers: apt-get install libevent-dev (Debian/Ubuntu), "
    "dnf install libevent-devel (Fedora), brew install libevent (macOS)",
)
LOADGEN = CProgram("loadgen", "loadgen.c")
ALLOC_COUNTER = CProgram("alloc_counter", "alloc_counter.c")


def cache_dir() -> Path:
    """Return the directory compiled programs are kept in (made if missing)."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    path = Path(root) / "threadlisten-bench"
    path.mkdir(parents=True, exist_ok=True)
    return path


def compiler() -> str | None:
    """Return the C compiler to use (``$CC``, else ``cc``), or None if there is none."""
    return shutil.which(os.environ.get("CC", "cc"))


def _compiler_version(cc: str) -> str:
    out = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30)
    return out.stdout.splitlines()[0] if out.stdout else cc


def build(program: CProgram, *, shared: bool = False, extra_flags: tuple[str, ...] = ()) -> Path:
    """Return the path of *program* compiled, building it first if needed.

    Args:
        program: what to build.
        shared: build a shared library (``-shared -fPIC``) instead of a program.
        extra_flags: more compiler flags (e.g. ``-I`` for Python's headers).

    Raises:
        BuildError: no compiler, or the compile failed (with the compiler's
            message and the program's hint).
    """
    cc = compiler()
    if cc is None:
        raise BuildError(f"{program.name}: no C compiler (set CC or install cc/gcc)")
    sources = [CSRC / program.source, CSRC / "benchserver.h"]
    flags = (*CFLAGS, *(("-shared", "-fPIC") if shared else ()), *extra_flags)
    digest = hashlib.sha256()
    for src in sources:
        digest.update(src.read_bytes())
    digest.update(" ".join((*flags, *program.libs, _compiler_version(cc))).encode())
    suffix = ".so" if shared else ""
    out = cache_dir() / f"{program.name}-{digest.hexdigest()[:16]}{suffix}"
    if out.exists():
        return out
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    cmd = [cc, *flags, "-o", str(tmp), str(sources[0]), *program.libs]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=COMPILE_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        raise BuildError(f"{program.name}: compile timed out") from exc
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        first = (proc.stderr.strip().splitlines() or ["(no message)"])[0]
        hint = f"; {program.hint}" if program.hint else ""
        raise BuildError(f"{program.name}: compile failed: {first}{hint}")
    tmp.replace(out)  # atomic: a concurrent run never sees half a binary
    return out
