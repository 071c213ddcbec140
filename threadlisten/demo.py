"""The showcase: one THREADSAFE listener driven from many threads at once, under load.

``python -m threadlisten demo`` needs nothing but this package (``rich`` makes
the display nicer when it is installed).  It shows, on real TCP connections
over loopback, every part of threadlisten's thread-safety contract (see
``threadlisten.listener``):

1. **One listener, a pool of workers.**  The acceptor thread runs the
   ``EventBase`` loop.  The accept callback does no I/O: it hands each socket
   to a bounded ``queue.Queue`` with ``put_nowait`` and returns; worker
   threads take the sockets, read a fixed-size payload, echo it back, close.

2. **Backpressure across threads.**  When the queue is full after a put, the
   callback calls ``listener.disable()`` on its own listener (allowed: it runs
   with the listener's recursive lock held).  New connections then wait in
   the kernel's backlog.  A *worker* thread re-enables the listener once the
   queue has drained to the low-water mark.  The callback never blocks: a
   blocking ``put`` would hold the listener lock while waiting for a worker,
   and a worker calling ``enable()`` needs that lock, a deadlock.

3. **Swapping the callback under load.**  Midway, the main thread calls
   ``set_cb(accept_v2, "v2")`` while connections pour in.  Every callback
   checks that it received its own argument: the pair is swapped atomically,
   and each connection is counted under exactly one handler.

4. **Freeing under load.**  Near the end (``--free-at``), the main thread
   calls ``free()`` while clients are still connecting and a batch of
   callbacks may be running.  ``free()`` waits for the running batch, never for
   the loop; when it returns the refcount is 0 and the socket is closed
   (``CLOSE_ON_FREE``).  Clients that connect afterwards are refused, and those
   still queued in the kernel's backlog are reset: the summary counts both.
   Sockets already accepted still belong to the workers and are all served.

5. **Nothing leaks.**  Inside the callbacks ``listener.refcount`` is 2 (the
   owner's reference and the batch's).  After everything is joined and
   closed, the process has exactly the descriptors and threads it started with.

Client threads connect in waves (``--burst`` connections each, all clients at
once, spread over ``--duration`` seconds) so that more connections arrive
together than the queue and the workers can take: that is what makes the
listener pause and resume.  Each connection sends a random payload that
starts with its id, and the client checks the echo byte for byte.

Lock order in this module: the listener lock, then the demo's own lock
(``_Demo._lock``, a leaf: nothing waits while holding it).  A worker never
holds the demo lock while calling ``enable()``.

The exit status is 0 only if every accepted connection was echoed and
verified, nothing unexpected happened (no error in any thread, no error
logged by threadlisten, the deadline was not hit), and the descriptors and
threads after the run are the same as before it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import math
import os
import queue
import random
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, Protocol, TextIO

from threadlisten import LEV_OPT, EventBase, Listener, ListenerFreedError

__all__ = ["DemoConfig", "DemoResult", "open_fds", "run_demo"]

HOST = "127.0.0.1"

#: Timeout of every blocking socket operation in the clients and the workers.
IO_TIMEOUT = 5.0

#: How long a join may still wait once the deadline has passed, in seconds.
GRACE = 2.0

#: Seconds between two refreshes of the progress display.
TICK = 0.5

_ID = struct.Struct("!Q")  # the connection id that starts every payload

_FLAGS = LEV_OPT.THREADSAFE | LEV_OPT.CLOSE_ON_FREE | LEV_OPT.REUSEABLE


# ---------------------------------------------------------------- configuration


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """The demo's parameters (the ``demo`` command's options).

    Attributes:
        connections: connections the clients make in total.
        clients: client threads; they share the connections.
        workers: worker threads serving the accepted connections.
        queue_size: capacity of the queue between the callback and the workers.
        burst: connections each client opens at once in each wave.
        payload_size: bytes per connection (the first 8 are its id).
        duration: seconds over which the waves are spread (0: no pacing).
        deadline: hard bound on the whole run, in seconds.
        free_at: free the listener once this fraction of the connections was accepted.
        seed: seed of the payloads' random generator (None: random).
    """

    connections: int = 600
    clients: int = 8
    workers: int = 4
    queue_size: int = 16
    burst: int = 8
    payload_size: int = 1024
    duration: float = 3.0
    deadline: float = 30.0
    free_at: float = 0.9
    seed: int | None = None

    @property
    def low_water(self) -> int:
        """Queue length at or below which a worker resumes a paused listener."""
        return self.queue_size // 4

    @property
    def swap_after(self) -> int:
        """Accepted connections after which the main thread calls ``set_cb``."""
        return max(1, self.connections // 2)

    @property
    def free_after(self) -> int:
        """Accepted connections after which the main thread calls ``free``."""
        return max(1, math.ceil(self.connections * self.free_at))

    def validate(self) -> None:
        """Check the values.

        Raises:
            ValueError: a count below 1, a payload shorter than its 8-byte id,
                a negative or infinite time, or ``free_at`` outside (0, 1].
        """
        for name in ("connections", "clients", "workers", "queue_size", "burst"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.payload_size < _ID.size:
            raise ValueError(f"payload_size must be >= {_ID.size} (it starts with the id)")
        for name in ("duration", "deadline"):
            value = getattr(self, name)
            if not 0 <= value < math.inf:
                raise ValueError(f"{name} must be a finite number of seconds >= 0")
        if not 0 < self.free_at <= 1:
            raise ValueError("free_at must be in (0, 1]")


# ---------------------------------------------------------------- results


def open_fds() -> set[int]:
    """Return the descriptors open in this process (from /proc/self/fd or /dev/fd).

    The descriptor that lists the directory is left out.  Any thread.

    Raises:
        OSError: neither directory can be listed.
    """
    for path in ("/proc/self/fd", "/dev/fd"):
        if os.path.isdir(path):
            fds = set()
            for name in os.listdir(path):
                fd = int(name)
                try:
                    os.fstat(fd)
                except OSError:
                    continue  # the one listdir() used, closed by now
                fds.add(fd)
            return fds
    raise OSError("cannot list this process's descriptors")


@dataclasses.dataclass
class DemoResult:
    """What happened, for the summary and the exit status.

    Counts are of connections unless named otherwise.  ``failures`` lists why
    the run failed; it is empty when ``ok``.
    """

    config: DemoConfig
    port: int = 0
    attempted: int = 0
    accepted: int = 0
    per_handler: dict[str, int] = dataclasses.field(default_factory=lambda: {"v1": 0, "v2": 0})
    echoed: int = 0
    verified: int = 0
    refused: int = 0
    dropped: int = 0
    pauses: int = 0
    resumes: int = 0
    swaps: int = 0
    peak_refcount: int = 0
    peak_queue: int = 0
    refcount_after_free: int | None = None
    free_seconds: float | None = None
    errors: list[str] = dataclasses.field(default_factory=list)
    error_count: int = 0
    fds_before: int = 0
    fds_after: int = 0
    leaked_fds: list[int] = dataclasses.field(default_factory=list)
    threads_before: int = 0
    threads_after: int = 0
    elapsed: float = 0.0
    deadline_hit: bool = False
    failures: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the run succeeded (``failures`` is empty)."""
        return not self.failures

    def judge(self) -> None:
        """Fill ``failures`` from the counts."""
        f = self.failures
        f.clear()
        if self.deadline_hit:
            f.append(f"the {self.config.deadline:g} s deadline was hit")
        if not self.accepted == self.echoed == self.verified:
            f.append(
                f"accepted {self.accepted}, echoed {self.echoed}, verified {self.verified}: "
                "not every accepted connection was echoed and verified"
            )
        if self.attempted != self.config.connections:
            f.append(f"only {self.attempted} of {self.config.connections} connections attempted")
        outcomes = self.verified + self.refused + self.dropped
        if self.error_count == 0 and outcomes != self.attempted:
            f.append(f"{self.attempted} attempted but {outcomes} accounted for")
        if self.error_count:
            f.append(f"{self.error_count} unexpected error(s)")
        if self.accepted and self.peak_refcount != 2:
            f.append(f"peak refcount inside callbacks was {self.peak_refcount}, not 2")
        if self.refcount_after_free != 0:
            f.append(f"refcount after free() was {self.refcount_after_free}, not 0")
        if self.fds_before != self.fds_after:
            f.append(
                f"descriptors: {self.fds_before} before, {self.fds_after} after "
                f"(leaked: {self.leaked_fds})"
            )
        if self.threads_before != self.threads_after:
            f.append(f"threads: {self.threads_before} before, {self.threads_after} after")


@dataclasses.dataclass(frozen=True)
class _Snapshot:
    """The counters at one moment, for the progress display."""

    elapsed: float
    total: int
    attempted: int
    done: int
    accepted: int
    echoed: int
    verified: int
    refused: int
    dropped: int
    queued: int
    queue_size: int
    state: str
    handler: str
    pauses: int
    resumes: int
    peak_refcount: int
    errors: int


# ---------------------------------------------------------------- the demo


class _LogCounter(logging.Handler):
    """Counts the ERROR records on the ``threadlisten`` logger (a callback that raised)."""

    def __init__(self, demo: _Demo) -> None:
        super().__init__(level=logging.ERROR)
        self._demo = demo

    def emit(self, record: logging.LogRecord) -> None:
        self._demo.error(f"threadlisten logged: {record.getMessage()}")


class _Demo:
    """One run of the demo.  ``run()`` is for the thread that made it."""

    def __init__(self, config: DemoConfig) -> None:
        self.config = config
        self.result = DemoResult(config)
        self._queue: queue.Queue[socket.socket | None] = queue.Queue(config.queue_size)
        # The demo lock: a leaf (taken inside the accept callback, so under the
        # listener lock; never held while taking the listener lock or waiting).
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # counters moved
        self._paused = False  # guarded by _lock: the callback disabled the listener
        self._handler = "v1"  # guarded by _lock: the callback in place, for the display
        self._freeing = False  # set before free(): resets after this are expected
        self._freed = False
        self._stop = threading.Event()  # abort: deadline hit or fatal error
        self._t0 = time.monotonic()
        self._deadline = self._t0 + config.deadline
        self._listener: Listener | None = None

    # ---------------------------------------------------------- helpers

    def remaining(self) -> float:
        """Seconds left before the deadline (at least 0)."""
        return max(0.0, self._deadline - time.monotonic())

    def bounded(self) -> float:
        """A timeout for a join or a wait: the time left, or a short grace."""
        return max(self.remaining(), GRACE) if not self._stop.is_set() else GRACE

    def error(self, message: str) -> None:
        """Record an unexpected error.  Any thread."""
        with self._changed:
            r = self.result
            r.error_count += 1
            if len(r.errors) < 10:
                r.errors.append(message)
            self._changed.notify_all()

    def _count(self, field: str, n: int = 1) -> None:
        with self._changed:
            setattr(self.result, field, getattr(self.result, field) + n)
            self._changed.notify_all()

    def snapshot(self) -> _Snapshot:
        """The counters now, for the display.  Any thread."""
        with self._lock:
            r = self.result
            if self._freed:
                state = "freed"
            elif self._paused:
                state = "paused"
            else:
                state = "accepting"
            return _Snapshot(
                elapsed=time.monotonic() - self._t0,
                total=self.config.connections,
                attempted=r.attempted,
                done=r.verified + r.refused + r.dropped + r.error_count,
                accepted=r.accepted,
                echoed=r.echoed,
                verified=r.verified,
                refused=r.refused,
                dropped=r.dropped,
                queued=self._queue.qsize(),
                queue_size=self.config.queue_size,
                state=state,
                handler=self._handler,
                pauses=r.pauses,
                resumes=r.resumes,
                peak_refcount=r.peak_refcount,
                errors=r.error_count,
            )

    # ---------------------------------------------- the accept callbacks
    #
    # Both run on the acceptor thread with the listener lock held and the
    # refcount raised by one.  They must not block.

    def accept_v1(self, listener: Listener, sock: socket.socket, address: Any, arg: Any) -> None:
        """The first accept callback, installed at creation with arg ``"v1"``."""
        self._accept(listener, sock, "v1", arg)

    def accept_v2(self, listener: Listener, sock: socket.socket, address: Any, arg: Any) -> None:
        """The second accept callback, swapped in midway by ``set_cb`` with arg ``"v2"``."""
        self._accept(listener, sock, "v2", arg)

    def _accept(self, listener: Listener, sock: socket.socket, handler: str, arg: Any) -> None:
        refcount = listener.refcount  # 2: the owner's reference and this batch's
        if arg != handler:
            self.error(f"accept callback {handler} got the argument {arg!r}: set_cb tore the pair")
        with self._changed:
            r = self.result
            r.peak_refcount = max(r.peak_refcount, refcount)
            try:
                self._queue.put_nowait(sock)  # never put(): see the module docstring
            except queue.Full:
                # Cannot happen: the listener is disabled as soon as the queue
                # is full, and only re-enabled once it has drained.
                sock.close()
                r.error_count += 1
                r.errors.append("the queue was full in the accept callback")
                full = True
            else:
                r.accepted += 1
                r.per_handler[handler] += 1
                queued = self._queue.qsize()
                r.peak_queue = max(r.peak_queue, queued)
                full = queued >= self.config.queue_size
            if full and not self._paused:
                self._paused = True
                r.pauses += 1
            self._changed.notify_all()
        if full:
            # Backpressure: stop accepting.  From inside the callback this
            # ends the batch right after we return.  A worker resumes it.
            listener.disable()

    def on_listener_error(self, listener: Listener, error: OSError, arg: Any) -> None:
        """The listener's error callback: any accept() error is unexpected here."""
        self.error(f"accept() failed on the listener: {error!r}")

    # -------------------------------------------------------------- workers

    def worker(self) -> None:
        """A worker thread: take sockets from the queue, echo, close; resume when drained."""
        try:
            while True:
                try:
                    sock = self._queue.get(timeout=self.bounded())
                except queue.Empty:
                    self.error(
                        f"{threading.current_thread().name}: no work nor end before the deadline"
                    )
                    return
                if sock is None:  # the main thread's "no more work"
                    return
                self._maybe_resume()
                self._serve(sock)
        except Exception as exc:
            self.error(f"{threading.current_thread().name} crashed: {exc!r}")

    def _maybe_resume(self) -> None:
        """Re-enable the listener if the callback paused it and the queue has drained."""
        listener = self._listener
        assert listener is not None
        with self._lock:
            if not self._paused or self._queue.qsize() > self.config.low_water:
                return
            # Only this worker resumes this pause.  No callback runs until the
            # enable() below (the listener is disabled), so nothing can pause
            # it again in between.
            self._paused = False
        # enable() takes the listener lock: never with the demo lock held.
        try:
            listener.enable()
        except ListenerFreedError:
            return  # the main thread freed it meanwhile: nothing to resume
        self._count("resumes")

    def _serve(self, sock: socket.socket) -> None:
        size = self.config.payload_size
        try:
            with sock:
                sock.settimeout(IO_TIMEOUT)  # blocking, bounded: simple for a worker
                data = _recv_exactly(sock, size)
                if len(data) != size:
                    self.error(f"worker: the client closed after {len(data)} of {size} bytes")
                    return
                sock.sendall(data)
        except OSError as exc:
            self.error(f"worker: {exc!r}")
            return
        self._count("echoed")

    # -------------------------------------------------------------- clients

    def client(self, index: int, count: int, waves: int) -> None:
        """A client thread: make *count* connections in waves of ``burst``, check each echo."""
        config = self.config
        rng = random.Random(None if config.seed is None else config.seed * 1000 + index)
        interval = config.duration / waves if waves else 0.0
        ids = itertools.count(index << 32)
        made = 0
        try:
            for wave in range(waves):
                if made >= count:
                    return
                # Pacing, not synchronisation: wait for this wave's start time
                # (all clients share the schedule, so their bursts coincide),
                # or return at once if the run is aborted.
                delay = self._t0 + wave * interval - time.monotonic()
                if self._stop.wait(max(0.0, delay)):
                    return
                n = min(config.burst, count - made)
                made += n
                self._wave([(next(ids), rng) for _ in range(n)])
        except Exception as exc:
            self.error(f"{threading.current_thread().name} crashed: {exc!r}")

    def _wave(self, conns: list[tuple[int, random.Random]]) -> None:
        """Open every connection of the wave, then send on each, then check each echo."""
        size = self.config.payload_size - _ID.size
        with contextlib.ExitStack() as stack:
            opened: list[tuple[socket.socket, bytes]] = []
            for conn_id, rng in conns:
                payload = _ID.pack(conn_id) + rng.randbytes(size)
                self._count("attempted")
                try:
                    sock = socket.create_connection((HOST, self.result.port), IO_TIMEOUT)
                except OSError as exc:
                    self._failed(conn_id, exc)
                    continue
                stack.enter_context(sock)
                opened.append((sock, payload))
            sent: list[tuple[socket.socket, bytes]] = []
            for sock, payload in opened:
                try:
                    sock.sendall(payload)
                except OSError as exc:
                    self._failed(_ID.unpack_from(payload)[0], exc)
                    continue
                sent.append((sock, payload))
            for sock, payload in sent:
                self._check_echo(sock, payload)

    def _check_echo(self, sock: socket.socket, payload: bytes) -> None:
        conn_id = _ID.unpack_from(payload)[0]
        try:
            echo = _recv_exactly(sock, len(payload))
        except OSError as exc:
            self._failed(conn_id, exc)
            return
        if len(echo) < len(payload):
            self._failed(conn_id, ConnectionResetError(f"EOF after {len(echo)} bytes"))
        elif echo != payload:
            self.error(f"connection {conn_id:#x}: the echo differs from the payload")
        else:
            self._count("verified")

    def _failed(self, conn_id: int, exc: OSError) -> None:
        """A connection failed: expected only once the listener is being freed."""
        if self._freeing and isinstance(exc, ConnectionRefusedError):
            self._count("refused")  # connected after free(): nobody listens
        elif self._freeing and isinstance(exc, ConnectionError):
            self._count("dropped")  # was in the kernel's backlog when free() closed it
        else:
            self.error(f"connection {conn_id:#x}: {exc!r}")

    # ---------------------------------------------------------- main thread

    def _wait_for_accepted(self, n: int) -> bool:
        """Wait until *n* connections were accepted; False on deadline or abort."""
        with self._changed:
            return (
                self._changed.wait_for(
                    lambda: (
                        self.result.accepted >= n
                        or self._stop.is_set()
                        or self.result.error_count > 0
                    ),
                    timeout=self.remaining(),
                )
                and self.result.accepted >= n
            )

    def _abort(self) -> None:
        with self._changed:
            self._stop.set()
            self._changed.notify_all()

    def _free(self, listener: Listener) -> None:
        """Free the listener from this (non-loop) thread, possibly mid-batch."""
        r = self.result
        with self._lock:
            self._freeing = True
        started = time.monotonic()
        listener.free()  # waits for a running batch, never for the loop
        r.free_seconds = time.monotonic() - started
        r.refcount_after_free = listener.refcount
        with self._lock:
            self._freed = True

    def run(self, display: _Display) -> DemoResult:
        """Run the demo on this thread and return the result (not yet judged).

        Raises:
            OSError: the listener could not be made.
        """
        config, r = self.config, self.result
        base = EventBase()
        listener: Listener | None = None
        threads: list[threading.Thread] = []
        clients: list[threading.Thread] = []
        ticker_stop = threading.Event()
        ticker: threading.Thread | None = None
        log_counter = _LogCounter(self)
        tl_logger = logging.getLogger("threadlisten")
        tl_logger.addHandler(log_counter)
        try:
            listener = Listener.bind(
                base,
                (HOST, 0),
                self.accept_v1,
                "v1",
                flags=_FLAGS,
                backlog=max(128, config.clients * config.burst),
            )
            listener.set_error_cb(self.on_listener_error)
            self._listener = listener
            r.port = listener.socket.getsockname()[1]
            display.start(self)
            base.start_thread()

            for i in range(config.workers):
                threads.append(
                    threading.Thread(target=self.worker, name=f"worker-{i}", daemon=True)
                )
            shares = [
                len(range(i, config.connections, config.clients)) for i in range(config.clients)
            ]
            waves = math.ceil(max(shares) / config.burst)
            for i, share in enumerate(shares):
                clients.append(
                    threading.Thread(
                        target=self.client, args=(i, share, waves), name=f"client-{i}", daemon=True
                    )
                )

            def tick() -> None:
                while not ticker_stop.wait(TICK):
                    display.update(self.snapshot())

            ticker = threading.Thread(target=tick, name="progress", daemon=True)
            self._t0 = time.monotonic()  # the wave schedule starts now
            for t in (*threads, *clients, ticker):
                t.start()

            # Midway: swap the callback while connections pour in.
            if self._wait_for_accepted(config.swap_after):
                listener.set_cb(self.accept_v2, "v2")
                with self._lock:
                    self._handler = "v2"
                r.swaps += 1
            # Near the end: free the listener while clients still connect.
            if not self._wait_for_accepted(config.free_after) and not r.error_count:
                r.deadline_hit = True
                self._abort()
            self._free(listener)

            for t in clients:
                t.join(self.bounded())
            if any(t.is_alive() for t in clients):
                r.deadline_hit = True
                self._abort()
            # No callback will put anything in the queue any more: tell the
            # workers to finish what is queued and stop.
            for _ in threads:
                try:
                    self._queue.put(None, timeout=self.bounded())
                except queue.Full:
                    r.deadline_hit = True
                    break
            for t in threads:
                t.join(self.bounded())
            if any(t.is_alive() for t in threads):
                r.deadline_hit = True
        finally:
            self._abort()
            if listener is not None and not listener.freed:
                listener.free()
            try:
                base.stop(GRACE)
                base.close()
            except (TimeoutError, RuntimeError) as exc:
                self.error(f"could not stop the event base: {exc!r}")
            # Sockets left in the queue (only if a worker died): close them.
            with contextlib.suppress(queue.Empty):
                while True:
                    leftover = self._queue.get_nowait()
                    if leftover is not None:
                        leftover.close()
            ticker_stop.set()
            if ticker is not None:
                ticker.join(GRACE)
            display.stop(self.snapshot())
            tl_logger.removeHandler(log_counter)
        r.elapsed = time.monotonic() - self._t0
        return r


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    """Read *size* bytes, or fewer if the peer closes first."""
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:])
        if n == 0:
            break
        got += n
    view.release()
    return bytes(buf[:got])


# ---------------------------------------------------------------- displays


class _Display(Protocol):
    """The progress display: ``start`` and ``stop`` on the main thread, ``update``
    on the progress thread."""

    def start(self, demo: _Demo) -> None: ...

    def update(self, snap: _Snapshot) -> None: ...

    def stop(self, snap: _Snapshot) -> None: ...

    def summary(self, result: DemoResult) -> None: ...


def _summary_rows(r: DemoResult) -> Iterator[tuple[str, str, bool | None]]:
    """(label, value, passed) rows of the summary; passed None: informative."""
    c = r.config
    yield "connections attempted", str(r.attempted), r.attempted == c.connections
    yield (
        "accepted by the listener",
        f"{r.accepted}   (v1 {r.per_handler['v1']}, v2 {r.per_handler['v2']})",
        None,
    )
    yield "echoed by workers", str(r.echoed), r.echoed == r.accepted
    yield "verified by clients", str(r.verified), r.verified == r.accepted
    yield (
        "refused after free",
        f"{r.refused + r.dropped}   (refused {r.refused}, reset in backlog {r.dropped})",
        None,
    )
    yield "unexpected errors", str(r.error_count), r.error_count == 0
    yield "pauses / resumes", f"{r.pauses} / {r.resumes}", None
    yield "peak queue length", f"{r.peak_queue} / {c.queue_size}", None
    yield "handler swaps", str(r.swaps), None
    yield "peak refcount in callbacks", str(r.peak_refcount), r.peak_refcount == 2 or not r.accepted
    free_ms = "-" if r.free_seconds is None else f"{r.free_seconds * 1000:.1f} ms"
    yield (
        "refcount after free",
        f"{r.refcount_after_free}   (free() took {free_ms})",
        r.refcount_after_free == 0,
    )
    yield (
        "descriptors before / after",
        f"{r.fds_before} / {r.fds_after}",
        r.fds_before == r.fds_after,
    )
    yield (
        "threads before / after",
        f"{r.threads_before} / {r.threads_after}",
        r.threads_before == r.threads_after,
    )
    yield "elapsed", f"{r.elapsed:.2f} s", not r.deadline_hit


def _header(demo: _Demo) -> str:
    c = demo.config
    return (
        f"threadlisten demo: listener on {HOST}:{demo.result.port}; {c.connections} connections "
        f"from {c.clients} clients in bursts of {c.burst}; {c.workers} workers; queue "
        f"{c.queue_size} (resume at {c.low_water}); set_cb after {c.swap_after}, "
        f"free after {c.free_after} accepted"
    )


class _PlainDisplay:
    """Plain text: one progress line every ``TICK`` seconds, then a text summary."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._lock = threading.Lock()
        self._started = False

    def _print(self, line: str) -> None:
        with self._lock:
            print(line, file=self._out, flush=True)

    def start(self, demo: _Demo) -> None:
        self._started = True
        self._print(_header(demo))

    def update(self, snap: _Snapshot) -> None:
        self._print(
            f"{snap.elapsed:6.1f}s  done {snap.done}/{snap.total}  accepted {snap.accepted}  "
            f"echoed {snap.echoed}  verified {snap.verified}  "
            f"refused {snap.refused + snap.dropped}  "
            f"queue {snap.queued}/{snap.queue_size}  listener {snap.state} ({snap.handler})  "
            f"pauses {snap.pauses} resumes {snap.resumes}  errors {snap.errors}"
        )

    def stop(self, snap: _Snapshot) -> None:
        if self._started:
            self.update(snap)

    def summary(self, result: DemoResult) -> None:
        lines = ["", "summary"]
        for label, value, passed in _summary_rows(result):
            mark = "" if passed is None else ("  ok" if passed else "  FAILED")
            lines.append(f"  {label:<28} {value}{mark}")
        for message in result.errors:
            lines.append(f"  error: {message}")
        if result.ok:
            lines.append("result: OK")
        else:
            lines.append("result: FAILED: " + "; ".join(result.failures))
        self._print("\n".join(lines))


class _RichDisplay:
    """rich: live progress bars and a status line, then a summary table."""

    def __init__(self, out: TextIO) -> None:
        from rich.console import Console
        from rich.live import Live
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self._console = Console(file=out)
        self._progress = Progress(
            TextColumn("{task.description:<26}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=self._console,
        )
        self._tasks: dict[str, Any] = {}
        self._live = Live(console=self._console, auto_refresh=False)
        self._lock = threading.Lock()

    def start(self, demo: _Demo) -> None:
        total = demo.config.connections
        for key, label in (
            ("done", "client connections done"),
            ("accepted", "accepted by the listener"),
            ("verified", "echoed and verified"),
        ):
            self._tasks[key] = self._progress.add_task(label, total=total)
        self._console.print(_header(demo), style="bold")
        self._live.update(self._render(demo.snapshot()))
        self._live.start()

    def _render(self, snap: _Snapshot) -> Any:
        from rich.console import Group
        from rich.text import Text

        for key in ("done", "accepted", "verified"):
            self._progress.update(self._tasks[key], completed=getattr(snap, key))
        style = {"accepting": "green", "paused": "yellow", "freed": "red"}[snap.state]
        state = Text.assemble(
            (f"{snap.elapsed:5.1f}s  ", "dim"),
            "listener ",
            (f"{snap.state:<9}", style),
            f"  callback {snap.handler}   queue {snap.queued:>3}/{snap.queue_size}",
        )
        counts = Text.assemble(
            f"       pauses {snap.pauses}  resumes {snap.resumes}   ",
            f"refused {snap.refused + snap.dropped}   peak refcount {snap.peak_refcount}   ",
            (f"errors {snap.errors}", "red" if snap.errors else ""),
        )
        return Group(self._progress, state, counts)

    def update(self, snap: _Snapshot) -> None:
        with self._lock:
            self._live.update(self._render(snap), refresh=True)

    def stop(self, snap: _Snapshot) -> None:
        with self._lock:
            if not self._tasks:
                return  # never started
            self._live.update(self._render(snap), refresh=True)
            self._live.stop()

    def summary(self, result: DemoResult) -> None:
        from rich.table import Table

        self._console.line()  # a file or a pipe gets the final frame without a newline
        table = Table(title="threadlisten demo: summary", title_justify="left")
        table.add_column("what")
        table.add_column("value")
        table.add_column("check")
        for label, value, passed in _summary_rows(result):
            check = "" if passed is None else ("[green]ok[/]" if passed else "[red]FAILED[/]")
            table.add_row(label, value, check)
        self._console.print(table)
        for message in result.errors:
            self._console.print(f"[red]error:[/] {message}", markup=True, highlight=False)
        if result.ok:
            self._console.print("result: [bold green]OK[/]")
        else:
            self._console.print("result: [bold red]FAILED[/]: " + "; ".join(result.failures))


def _make_display(plain: bool, out: TextIO) -> _Display:
    if not plain:
        try:
            return _RichDisplay(out)
        except ImportError:
            pass
    return _PlainDisplay(out)


# ---------------------------------------------------------------- entry point


def run_demo(
    config: DemoConfig | None = None,
    *,
    plain: bool = False,
    out: TextIO | None = None,
) -> int:
    """Run the demo, print a live progress display and a summary, return the exit status.

    Args:
        config: the parameters; ``DemoConfig()`` by default.
        plain: use plain text even if rich is installed.
        out: where to print (``sys.stdout`` by default).

    Returns:
        0 if every accepted connection was echoed and verified, nothing
        unexpected happened and no descriptor or thread leaked; 1 otherwise
        (or if the listener cannot be made); 130 if interrupted (Ctrl-C).

    Raises:
        ValueError: *config* is invalid.

    Thread-safety: any one thread at a time (the main thread from the CLI);
    it starts and joins its own threads.
    """
    config = DemoConfig() if config is None else config
    config.validate()
    stream = sys.stdout if out is None else out
    display = _make_display(plain, stream)  # imports rich before the count below
    fds_before = open_fds()
    threads_before = threading.active_count()
    demo = _Demo(config)
    try:
        result = demo.run(display)
    except OSError as exc:
        print(f"threadlisten demo: cannot listen on {HOST}: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        # run() has freed the listener and stopped the base on its way out.
        print("threadlisten demo: interrupted", file=sys.stderr, flush=True)
        return 130
    fds_after = open_fds()
    result.fds_before, result.fds_after = len(fds_before), len(fds_after)
    result.leaked_fds = sorted(fds_after - fds_before)
    result.threads_before = threads_before
    result.threads_after = threading.active_count()
    result.judge()
    display.summary(result)
    return 0 if result.ok else 1
