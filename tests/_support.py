"""Helpers shared by the test files; the shared fixtures are in ``conftest.py``.

Import it as ``_support`` (pytest puts ``tests/`` on ``sys.path``, as it does
for ``conftest.py``).  Every wait here is bounded, by ``WAIT`` unless the
caller passes its own bound: long enough never to run out on a healthy run,
short enough that a hang fails the test instead of the session.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from threadlisten import EventBase, Listener
from threadlisten._runtime import DelegatingLock, LockLike, Runtime
from threadlisten.demo import open_fds as open_fds  # the one leak check, re-exported

#: The default bound, in seconds, of every wait in these helpers.
WAIT = 10.0
LOCALHOST = ("127.0.0.1", 0)
REPO_ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------ descriptors


# ------------------------------------------------------------ child processes


def child_env() -> dict[str, str]:
    """This process's environment, with the repository first on ``PYTHONPATH``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_child(code: str, timeout: float = 60) -> dict[str, Any]:
    """Run *code* in a fresh interpreter (so that ``setrlimit`` cannot affect
    pytest) and return the JSON object it prints on its last line."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO_ROOT,
        env=child_env(),
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{proc.stderr}"
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# ------------------------------------------------------------ locks that report


class ContendedRLock(DelegatingLock):
    """A lock (a new ``threading.RLock`` unless *inner* is given) that sets
    *contended* when a blocking acquire has to wait for it."""

    def __init__(self, contended: threading.Event, inner: LockLike | None = None) -> None:
        super().__init__(threading.RLock() if inner is None else inner)
        self._contended = contended

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if self._lock.acquire(False):
            return True
        if not blocking:
            return False
        self._contended.set()
        return self._lock.acquire(True, timeout)


class ContentionRuntime(Runtime):
    """Its listener locks set ``contended`` when a thread has to wait for one.

    A test waits for ``contended`` instead of sleeping to let another thread
    reach the lock: deterministic, and no sleep.
    """

    def __init__(self) -> None:
        self.contended = threading.Event()

    def rlock(self, name: str) -> LockLike:
        return ContendedRLock(self.contended)


# ------------------------------------------------------------ connections


class Collector:
    """An accept callback that keeps every socket it receives and wakes waiters
    (``close()`` closes the sockets)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._calls: list[tuple[socket.socket, Any, Any]] = []  # (sock, address, arg)

    def __call__(self, listener: Listener, sock: socket.socket, address: Any, arg: Any) -> None:
        with self._cond:
            self._calls.append((sock, address, arg))
            self._cond.notify_all()

    @property
    def count(self) -> int:
        with self._cond:
            return len(self._calls)

    @property
    def socks(self) -> list[socket.socket]:
        with self._cond:
            return [sock for sock, _, _ in self._calls]

    @property
    def addresses(self) -> list[Any]:
        with self._cond:
            return [address for _, address, _ in self._calls]

    @property
    def args(self) -> list[Any]:
        with self._cond:
            return [arg for _, _, arg in self._calls]

    def wait_for(self, n: int, timeout: float = WAIT) -> bool:
        """Wait until at least *n* connections were delivered; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self._calls) >= n, timeout)

    def close(self) -> None:
        for sock in self.socks:
            sock.close()


def connect(address: Any, timeout: float = WAIT) -> socket.socket:
    """A client connected to *address* (a TCP tuple or an AF_UNIX path).

    On loopback a connection is in the listener's accept queue when this
    returns: no further wait is needed.
    """
    if isinstance(address, str | bytes):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
        except BaseException:
            sock.close()
            raise
        return sock
    return socket.create_connection(address[:2], timeout=timeout)


class Clients:
    """Client connections, all closed at the end of the test."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.socks: list[socket.socket] = []

    def connect(self, address: tuple[str, int], payload: bytes = b"") -> socket.socket:
        """Connect to *address* and send *payload* (if any); return the client socket."""
        sock = connect(address)
        with self._lock:
            self.socks.append(sock)
        if payload:
            sock.sendall(payload)
        return sock

    def close(self) -> None:
        with self._lock:
            for sock in self.socks:
                sock.close()


def still_queued(client: socket.socket, timeout: float = WAIT) -> bool:
    """True if nobody accepted-and-closed or reset *client*'s connection: a
    read neither returns EOF nor fails, it would block.  (It leaves *client*
    with *timeout*.)"""
    client.setblocking(False)
    try:
        client.recv(1)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        client.settimeout(timeout)
    return False


def tcp_socket(family: socket.AddressFamily = socket.AF_INET) -> socket.socket:
    """A bound, not yet listening TCP socket on loopback."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.bind(("::1", 0) if family == socket.AF_INET6 else LOCALHOST)
    except BaseException:
        sock.close()
        raise
    return sock


# ------------------------------------------------------------ running the loop


def loop_once(base: EventBase, timeout: float = WAIT) -> None:
    """One ``loop(once=True)`` in this thread: wait for something active, run it
    (a timer breaks the loop after *timeout* seconds)."""
    guard = base.call_later(timeout, base.loopbreak)
    try:
        base.loop(once=True)
    finally:
        guard.cancel()


def loop_until(base: EventBase, predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    """Run *base*'s loop in this thread, a round at a time, until *predicate* holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        remaining = deadline - time.monotonic()
        assert remaining > 0, "timed out running the loop"
        loop_once(base, remaining)


def round_trip(base: EventBase, timeout: float = WAIT) -> None:
    """Wait (bounded) until the loop thread ran a callable handed over now."""
    done = threading.Event()
    base.call_soon_threadsafe(done.set)
    assert done.wait(timeout), "the loop thread did not run a handed-over callable"


def loop_barrier(base: EventBase, timeout: float = WAIT) -> None:
    """Return once the loop thread has dispatched all readiness present now.

    The first hop runs in some round N; the second is queued during N, so it
    runs in round N + 1 after that round's poll (made after this call) and
    after the event callbacks it dispatched.
    """
    done = threading.Event()
    base.call_soon_threadsafe(base.call_soon_threadsafe, done.set)
    assert done.wait(timeout), "the loop thread did not run the barrier"
