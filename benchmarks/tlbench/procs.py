"""Start a benchmark server process and drive it over its control protocol.

The protocol is described in ``servers/proto.py``.  A ``Launcher`` knows how
to turn a ``Peer`` into a command line (which interpreter, which binary,
which ``PYTHONPATH``); a ``ServerProc`` is one running server.  Every read
from a server has a timeout, and a server that misbehaves is killed: no run
can hang on one.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from tlbench import cbuild, peers_env
from tlbench.machine import pin
from tlbench.peers import Peer

BENCH_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = BENCH_DIR.parent

#: Seconds a server may take to print READY: imports (Twisted, gevent) and,
#: on a busy machine, a slow start.
READY_TIMEOUT = 60.0
#: Seconds to wait for any other reply.
REPLY_TIMEOUT = 30.0
#: Seconds an exiting server gets before it is killed.
EXIT_TIMEOUT = 5.0


class ServerError(Exception):
    """A server did not answer as the protocol says (with its stderr's tail)."""


@dataclass(frozen=True)
class CountSample:
    """One ``COUNT`` reply: connections so far, the server's clock and CPU time."""

    count: int
    now_ns: int
    cpu_ns: int
    extras: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Times:
    """A ``DONE`` or ``TIMES`` reply: connections, first and last callback times."""

    count: int
    first_ns: int
    last_ns: int


class Launcher:
    """Builds server command lines.

    Args:
        scratch_core: a directory holding a ``threadlisten`` package to run for
            the ``scratch`` rows instead of the tree's (or None).
    """

    def __init__(self, scratch_core: Path | None = None) -> None:
        self.scratch_core = scratch_core
        self._binaries: dict[str, Path] = {}
        #: What each server said about itself in its READY line, by peer key.
        self.infos: dict[str, dict[str, Any]] = {}

    def unavailable(self, peer: Peer, installed: dict[str, str | None]) -> str | None:
        """Return why *peer* cannot run here, or None if it can.

        *installed* is ``peers_env.probe()``.  Builds C programs as a side effect.
        """
        if peer.scratch and self.scratch_core is None:
            return "no --scratch-core given"
        if peer.program is not None:
            try:
                self._binaries[peer.key] = cbuild.build(peer.program)
            except cbuild.BuildError as exc:
                return str(exc)
            return None
        missing = [d for d in peer.needs if not installed.get(d)]
        if missing:
            if not peers_env.exists():
                return (
                    f"needs {', '.join(missing)}: run with --peers install "
                    f"(makes {peers_env.VENV.relative_to(REPO_ROOT)})"
                )
            return f"{', '.join(missing)} not importable in {peers_env.VENV}"
        return None

    def command(self, peer: Peer, server_args: list[str]) -> tuple[list[str], dict[str, str]]:
        """Return ``(argv, environment)`` to start *peer* with the common
        *server_args* (``--port``, ``--backlog`` ...)."""
        env = dict(os.environ)
        # Lock debugging only where a row asks for it.
        env.pop("THREADLISTEN_LOCK_DEBUG", None)
        if peer.program is not None:
            binary = self._binaries.get(peer.key) or cbuild.build(peer.program)
            return [str(binary), *server_args], env
        assert peer.module is not None
        path = [str(REPO_ROOT), str(BENCH_DIR)]
        if peer.scratch:
            assert self.scratch_core is not None
            path.insert(0, str(self.scratch_core))
        env["PYTHONPATH"] = os.pathsep.join(path)
        interpreter = str(peers_env.python()) if peer.needs else sys.executable
        argv = [interpreter, "-m", f"tlbench.servers.{peer.module}", *server_args, *peer.args]
        return argv, env


class ServerProc:
    """One running server, pinned to *core*; a context manager that ends it.

    Raises ``ServerError`` from any method when the server dies or does not
    answer in time.
    """

    def __init__(
        self,
        launcher: Launcher,
        peer: Peer,
        *,
        port: int = 0,
        backlog: int = 128,
        core: int | None = None,
        reuseport: bool = False,
        stamp: int = 0,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        args = ["--port", str(port), "--backlog", str(backlog)]
        if reuseport:
            args.append("--reuseport")
        if stamp:
            args += ["--stamp", str(stamp)]
        argv, env = launcher.command(peer, args)
        argv += extra_args
        self.peer = peer
        # Kept open for the server's life (stderr_tail reads it); close() closes it.
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        # cwd: python -m puts the working directory first on sys.path, where a
        # threadlisten/ (the repository root) would shadow PYTHONPATH's choice.
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            cwd=BENCH_DIR,
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._stdin = self._proc.stdin
        self._out_fd = self._proc.stdout.fileno()
        self._buffer = b""
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._out_fd, selectors.EVENT_READ)
        self.port = 0
        self.info: dict[str, Any] = {}
        try:
            pin(self._proc.pid, core)
            ready = self._expect("READY", READY_TIMEOUT)
            self.port = int(ready[0])
            self.info = json.loads(" ".join(ready[1:]) or "{}")
            launcher.infos.setdefault(peer.key, self.info)
        except BaseException:
            self.close()
            raise

    @property
    def pid(self) -> int:
        """The server's process id."""
        return self._proc.pid

    def cpu_ns(self) -> int | None:
        """Return the CPU time the server's threads have run, in nanoseconds
        (the scheduler's own account, ``/proc/<pid>/task/*/schedstat``, exact
        to the nanosecond, unlike the 10 ms ticks of ``/proc/<pid>/stat``);
        None where it cannot be read."""
        base = f"/proc/{self._proc.pid}/task"
        total = 0
        try:
            for tid in os.listdir(base):
                with open(f"{base}/{tid}/schedstat") as fh:
                    total += int(fh.read().split()[0])
        except (OSError, ValueError):
            return None
        return total

    # ------------------------------------------------------------- protocol

    def go(self, target: int | str = 0) -> None:
        """Start accepting; *target*: connections until ``DONE`` (0: none, "auto")."""
        self._send(f"GO {target}")

    def wait_done(self, timeout: float) -> Times:
        """Wait for ``DONE`` and return its times."""
        count, first, last = (int(x) for x in self._expect("DONE", timeout))
        return Times(count, first, last)

    def sample(self) -> CountSample:
        """Ask ``COUNT``."""
        self._send("COUNT")
        words = self._expect("COUNT", REPLY_TIMEOUT)
        extras = {}
        for word in words[3:]:
            key, _, value = word.partition("=")
            extras[key] = int(value)
        return CountSample(int(words[0]), int(words[1]), int(words[2]), extras)

    def times(self) -> Times:
        """Ask ``TIMES``."""
        self._send("TIMES")
        count, first, last = (int(x) for x in self._expect("TIMES", REPLY_TIMEOUT))
        return Times(count, first, last)

    def stamps(self, path: Path) -> None:
        """Ask the server to write its latency stamps to *path*."""
        self._send(f"STAMPS {path}")
        self._expect("OK", REPLY_TIMEOUT)

    def wait_count(self, count: int, timeout: float, poll: float = 0.05) -> CountSample:
        """Poll ``COUNT`` every *poll* seconds until it reaches *count*; return the
        last sample (which may be short of *count* after *timeout* seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            sample = self.sample()
            if sample.count >= count or time.monotonic() >= deadline:
                return sample
            time.sleep(poll)  # pacing a poll of another process, not synchronisation

    # ------------------------------------------------------------ plumbing

    def _send(self, line: str) -> None:
        try:
            self._stdin.write((line + "\n").encode())
            self._stdin.flush()
        except BrokenPipeError as exc:
            raise self._error(f"server gone while sending {line!r}") from exc

    def _readline(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not self._selector.select(left):
                raise self._error(f"no reply within {timeout:.0f} s")
            chunk = os.read(self._out_fd, 65536)
            if not chunk:
                raise self._error("server exited")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    def _expect(self, word: str, timeout: float) -> list[str]:
        line = self._readline(timeout)
        parts = line.split()
        if not parts or parts[0] != word:
            raise self._error(f"expected {word}, got {line!r}")
        return parts[1:]

    def _error(self, message: str) -> ServerError:
        return ServerError(f"{self.peer.key}: {message}; stderr: {self.stderr_tail()!r}")

    def stderr_tail(self, limit: int = 600) -> str:
        """Return the end of what the server wrote to stderr."""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-limit:]

    def close(self) -> None:
        """Ask the server to exit; kill it if it does not within ``EXIT_TIMEOUT``."""
        if self._proc.poll() is None:
            try:
                self._stdin.write(b"EXIT\n")
                self._stdin.flush()
            except OSError:
                pass
            try:
                self._proc.wait(EXIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        for stream in (self._proc.stdin, self._proc.stdout):
            if stream is not None:
                stream.close()
        self._selector.close()
        self._stderr.close()

    def __enter__(self) -> ServerProc:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
