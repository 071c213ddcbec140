"""Lock debugging: checked locks, guarded listener state and a lock-order graph.

libevent's ``evthread_enable_lock_debugging()`` for threadlisten, plus a small
lockdep.  Switch it on before any ``EventBase`` or ``Listener`` is made::

    import threadlisten.debug
    threadlisten.debug.enable_lock_debugging()

or set ``THREADLISTEN_LOCK_DEBUG=1`` (or ``true``/``yes``/``on``) in the
environment.  The variable is read when this module is imported: by
``import threadlisten.debug`` in a test suite's ``conftest.py``, by
``pytest -p threadlisten.debug``, or by ``import threadlisten`` (the
package imports this module when the variable is set, and not otherwise).
From then on every base built with the default runtime gets a
``DebugRuntime``: checked locks, a checked ``Listener`` subclass and checks at
the core's scheduling points.  Production code is untouched: it asks its
``Runtime`` for locks and calls a no-op ``point()``, nothing more.

The checks (``LockDebugError.check`` names them)
------------------------------------------------

======================  ===============================================  =======================
check                   raised when                                      libevent / kernel
======================  ===============================================  =======================
non-owner-release       a lock is released by a thread not holding it    ``debug_lock_unlock``
negative-count          a lock nobody holds is released                  ``count >= 0``
self-deadlock           a non-recursive lock is re-acquired by its       ``count == 1`` if not
                        owner (raised at once, no hang); a thread        recursive
                        waits for a loop it runs itself
destroyed-held          a listener is destroyed while the destroying     ``debug_lock_free``
                        thread still holds its lock (bug #341)           ``count == 0``
unbalanced-call         a public ``Listener`` call (``enable``,          the 2016 missing
                        ``disable``, ``set_cb``, ``set_error_cb``,       ``UNLOCK`` (#341)
                        ``free``, properties) or ``EventBase.loop``
                        returns with the caller's held locks changed
unbalanced-callback     a user callback returns with the thread's        ``lockdep_pin_lock``
                        held locks changed
unguarded-access        guarded listener state (``_cb``, ``_arg``,       ``EVLOCK_ASSERT_LOCKED``
                        ``_errorcb``, ``_enabled``, ``_refcount``,
                        ``_freed``, ``_armed``, ``_backoff``,
                        ``_backoff_delay``, ``_destroyed``) is read or
                        written without the listener lock (THREADSAFE)
not-held                a point the core reaches with a lock held        ``EVLOCK_ASSERT_LOCKED``
                        (accepted, destroy, refcount, callback entry,
                        base wake-up/hand-off/event (un)register) finds
                        it not held
wrong-thread            a loop-thread-only function runs elsewhere, or   ``EVBASE_IN_THREAD``
                        a listener without THREADSAFE is used from a
                        foreign thread while its base runs
lock-order              ``LockOrderError``: an acquisition, or a wait    lockdep
                        for the loop thread, closes a cycle
lock-wait-timeout       a blocking acquire waited longer than            the hang #341 left
                        ``lock_wait_timeout`` (60 s): raised with the    behind
                        holder's current stack instead of hanging
======================  ===============================================  =======================

Lock classes: ``listener.lock`` (recursive, one per THREADSAFE listener),
``base.lock`` (plain, one per base) and the pseudo-class ``base.dispatch``,
"held" by the loop thread while it runs a base's loop and waited for by
``EventBase.stop()``.  ``listener.gate`` (plain, one per THREADSAFE listener)
is checked as a lock (owner, release, wait limit) but left out of the order
checks (``GATE_CLASSES``): it is held only while waiting for its own
listener's lock, so its order is that lock's, which a public call records
as a blocking acquisition even when it takes the lock without waiting.
Same-class nesting (two listeners' locks) is ordered per instance: see
``threadlisten._lockdep``.  ``lockdep_report()`` returns
the graph (``.to_dot()``, ``.write_dot(path)``); ``reset_lockdep()`` empties it.

Where an error surfaces.  Every check raises in the thread that broke the
rule.  On the loop thread that is inside the core's callback dispatch, which
catches ``Exception`` from callbacks and logs it on the ``threadlisten``
logger (the test suite fails a test on any ERROR record there); an error in
``base.loop_exit`` escapes ``loop()``, and ``start_thread``'s thread logs it.
The core never swallows one silently, but a user callback could; so every
error is also appended to ``errors()`` before it is raised.

The rule for switching it on.  libevent's ``evthread_set_lock_callbacks``
refuses once a threadable object exists, because objects made before keep
their unchecked locks.  Here the default ``Runtime`` keeps no record of what
it built, so ``enable_lock_debugging()`` looks at the live objects instead:
it refuses while any *open* ``EventBase`` built on the runtime it is about to
replace is still alive (a closed base can run no loop and no callback; a
listener keeps its base alive, so checking bases covers listeners).  Bases
built with an explicit ``runtime=`` are the caller's choice and are left out.

Cost: see ``benchmarks/lock_debug_overhead.py``.  Debug mode only.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import threading
import types
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar, cast

from threadlisten._debug_locks import (
    DebugLock,
    HeldSnapshot,
    LockDebugError,
    PseudoLock,
    TrackedLock,
    clear_errors,
    describe_held,
    diff_held,
    errors,
    fail,
    held_locks,
    held_snapshot,
    hide_from_stacks,
    release_extra,
)
from threadlisten._flags import LEV_OPT
from threadlisten._lockdep import Edge, LockdepReport, LockGraph, LockOrderError
from threadlisten._runtime import (
    DelegatingRuntime,
    LockLike,
    LockWrapper,
    Runtime,
    get_default_runtime,
    set_default_runtime,
)
from threadlisten.base import EventBase
from threadlisten.event import Event
from threadlisten.listener import Listener

__all__ = [
    "ENV_VAR",
    "GATE_CLASSES",
    "DebugLock",
    "DebugRuntime",
    "Edge",
    "LockDebugError",
    "LockOrderError",
    "LockdepReport",
    "checked_listener_type",
    "clear_errors",
    "disable_lock_debugging",
    "enable_lock_debugging",
    "errors",
    "held_locks",
    "lock_debugging_enabled",
    "lockdep_report",
    "reset_lockdep",
]

hide_from_stacks(__file__)

#: The environment variable that switches lock debugging on at import of this module.
ENV_VAR: Final = "THREADLISTEN_LOCK_DEBUG"

_T = TypeVar("_T")

#: The process-wide lock-order graph every ``DebugRuntime`` reports to.
_graph = LockGraph()

#: Lock classes left out of the order checks: a gate is held only while its
#: holder waits for the one lock it guards (a THREADSAFE listener's public
#: calls wait for ``listener.lock`` holding ``listener.gate``, so that the
#: loop thread cannot start a new batch meanwhile).  Its order is that lock's,
#: and ``_OrderedCallerLock`` records it.  Ordered as a class of its own, the
#: gate would make a callback of listener A that waits for listener B's lock
#: report ``listener.lock -> listener.gate -> listener.lock``: a cycle of
#: classes with no cycle of locks behind it (A's lock, B's gate, B's lock).
GATE_CLASSES: Final = frozenset({"listener.gate"})


def lockdep_report() -> LockdepReport:
    """Return the lock-order graph seen so far: classes, edges, first-seen stacks.

    Returns:
        A ``LockdepReport`` snapshot; ``.to_dot()``/``.write_dot(path)`` give Graphviz.

    Thread-safety: any thread.  libevent has no counterpart; Linux's lockdep
    shows the same graph in ``/proc/lockdep`` and ``/proc/lockdep_chains``.
    """
    return _graph.report()


def reset_lockdep() -> None:
    """Forget every observed lock order (for tests; lockdep keeps its graph for ever).

    Thread-safety: any thread; locks currently held stay held and checked.
    No libevent counterpart.
    """
    _graph.reset()


# ------------------------------------------------------------ per-thread frames


@dataclass
class _Frame:
    """A callback or a loop this thread is inside, with its held set at entry."""

    owner: object
    which: str
    before: HeldSnapshot


class _Frames(threading.local):
    def __init__(self) -> None:
        self.stack: list[_Frame] = []


_frames = _Frames()


def _pop_frame(owner: object, which: str) -> _Frame | None:
    # The innermost matching frame; frames above it were never closed (a
    # callback that raised BaseException skips the exit point) and are dropped.
    stack = _frames.stack
    for i in range(len(stack) - 1, -1, -1):
        frame = stack[i]
        if frame.owner is owner and frame.which == which:
            del stack[i:]
            return frame
    return None


def _check_balance(before: HeldSnapshot, what: str, check: str) -> None:
    """Raise if the calling thread's held set differs from *before*, after undoing leaks."""
    after = held_snapshot()
    if after == before:
        return
    extra, missing = diff_held(before, after)
    release_extra(extra)
    parts = [f"{what} returned with this thread's locks changed:"]
    if extra:
        parts.append(f"still holding {describe_held(extra)} (released now by the checker)")
    if missing:
        parts.append(f"no longer holding {describe_held(missing)}")
    fail(LockDebugError(" ".join(parts), check=check))


def _listener_name(listener: Listener) -> str:
    # Never the listener's repr: that reads guarded state.
    return f"listener fd={listener._fd}"


# ------------------------------------------------------ the checked Listener

#: Listener state guarded by its lock (checked for THREADSAFE listeners).
GUARDED_ATTRIBUTES: Final = (
    "_arg",
    "_armed",
    "_backoff",
    "_backoff_delay",
    "_cb",
    "_destroyed",
    "_enabled",
    "_errorcb",
    "_freed",
    "_refcount",
)
#: Public methods whose lock balance (and thread, without THREADSAFE) is checked.
PUBLIC_METHODS: Final = ("enable", "disable", "set_cb", "set_error_cb", "free")
#: Public properties checked the same way.
PUBLIC_PROPERTIES: Final = (
    "backing_off",
    "base",
    "enabled",
    "fd",
    "flags",
    "freed",
    "max_accepts",
    "refcount",
    "socket",
)

_checked_types: dict[type[Any], type[Any]] = {}
_checked_types_mutex = threading.Lock()


def _lookup(cls: type[Any], name: str) -> Any:
    for klass in cls.__mro__:
        if name in vars(klass):
            return vars(klass)[name]
    raise AttributeError(f"{cls.__name__} has no attribute {name!r}")


def _guard_failed(listener: Listener, name: str, access: str) -> None:
    fail(
        LockDebugError(
            f"{access} of {name} of {_listener_name(listener)} without its listener.lock held "
            "by this thread",
            check="unguarded-access",
        )
    )


def _guarded_slot(cls: type[Any], name: str) -> property:
    """A property over the slot *name* of *cls* that checks the listener lock is held."""
    slot = _lookup(cls, name)
    if not hasattr(slot, "__set__") or not hasattr(slot, "__get__") or isinstance(slot, property):
        raise TypeError(f"{cls.__name__}.{name} is not a slot; cannot guard it")
    get = slot.__get__
    set_ = slot.__set__
    get_ident = threading.get_ident

    def fget(self: Any) -> Any:
        lock = self._dbg_guard
        if lock is not None and lock._owner != get_ident():
            _guard_failed(self, name, "read")
        return get(self, cls)

    def fset(self: Any, value: Any) -> None:
        lock = self._dbg_guard
        if lock is not None and lock._owner != get_ident():
            _guard_failed(self, name, "write")
        set_(self, value)

    return property(fget, fset, doc=f"{name}, guarded by the listener lock (lock debugging).")


def _check_thread(listener: Any, what: str) -> None:
    base: EventBase | None = listener._dbg_affine
    if base is not None and base.running and not base.in_loop_thread():
        fail(
            LockDebugError(
                f"{what} on {_listener_name(listener)}, which is not THREADSAFE, from thread "
                f"{threading.current_thread().name!r} while its base's loop runs in another "
                "thread (use the loop thread: a callback or call_soon_threadsafe)",
                check="wrong-thread",
            )
        )


def _checked_call(fn: Callable[..., Any], what: str) -> Callable[..., Any]:
    """Wrap a public method: thread check (no THREADSAFE), then lock balance."""

    @functools.wraps(fn)
    def checked(self: Any, *args: Any, **kwargs: Any) -> Any:
        if self._dbg_affine is not None:
            _check_thread(self, what)
        before = held_snapshot()
        try:
            return fn(self, *args, **kwargs)
        finally:
            if held_snapshot() != before:
                _check_balance(before, f"{what} on {_listener_name(self)}", "unbalanced-call")

    return checked


class _OrderedCallerLock(LockWrapper):
    """A THREADSAFE listener's caller lock, with the order of a blocking acquisition.

    The listener's public calls take its lock through ``_CallerLock``: a
    try-acquire first, and only if that fails a wait holding the gate.  A
    try-acquire adds no lock-order edge, so without this wrapper lockdep would
    see a nested call (listener A's callback calling listener B) only when
    B's lock happened to be taken at that moment: the very luck lockdep exists
    to do without.  But the call *is* a blocking acquisition (it waits when
    the lock is taken), so this records its order first, whenever the calling
    thread does not hold the lock already (a callback calling its own
    listener only recurses).
    """

    __slots__ = ("_caller", "_lock")

    def __init__(self, caller: LockLike, lock: DebugLock) -> None:
        self._caller = caller
        self._lock = lock

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        lock = self._lock
        if blocking and timeout < 0 and not lock.held_by_me():
            held = held_locks()
            if held:
                _graph.check_acquire(lock, held)
        return self._caller.acquire(blocking, timeout)

    def release(self) -> None:
        self._caller.release()


def _tracked(lock: object) -> object:
    """The checked lock inside *lock*: *lock* itself, or the first
    ``TrackedLock`` down its chain of ``wrapped`` locks (a lock of a runtime
    that wraps this one's, such as ``trace.TracingRLock`` over a
    ``DebugLock`` when a ``TraceRuntime`` has a ``DebugRuntime`` inside).
    *lock* when there is none."""
    inner = lock
    for _ in range(_MAX_WRAPPERS):
        if isinstance(inner, TrackedLock):
            return inner
        inner = getattr(inner, "wrapped", None)
        if inner is None:
            break
    return lock


#: How many lock wrappers ``_tracked`` looks through (runtimes stack a few
#: deep at most; the bound keeps a wrapper that wraps itself from looping).
_MAX_WRAPPERS = 8


def _make_checked_type(cls: type[Any]) -> type[Any]:
    parent_init = cls.__init__
    parent_repr = _lookup(cls, "__repr__")
    raw_slots = [
        (name, vars(klass)[name])
        for klass in reversed(cls.__mro__)
        for name in vars(klass).get("__slots__", ())
        if not name.startswith("__")
    ]

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        # Guarding starts once construction is over: until then nobody else
        # can see the object, and the core fills in its state unlocked.
        self._dbg_guard = None
        self._dbg_affine = None
        parent_init(self, *args, **kwargs)
        lock = _tracked(self._lock)
        if isinstance(lock, TrackedLock):
            lock.label = _listener_name(self)
        if isinstance(lock, DebugLock) and self._caller_lock is not self._lock:
            self._caller_lock = _OrderedCallerLock(self._caller_lock, lock)
        if self._flags & LEV_OPT.THREADSAFE:
            self._dbg_guard = lock if isinstance(lock, TrackedLock) else None
        else:
            self._dbg_affine = self._base

    def __repr__(self: Any) -> str:
        # Listener.__repr__ reads guarded state without the lock (a racy but
        # harmless diagnostic read); it must not raise, least of all while an
        # error message is being built.  So it is given the raw slot values.
        raw = types.SimpleNamespace()
        for name, slot in raw_slots:
            with contextlib.suppress(AttributeError):
                setattr(raw, name, slot.__get__(self, cls))
        return str(parent_repr(raw))

    namespace: dict[str, Any] = {
        "__slots__": ("_dbg_affine", "_dbg_guard"),
        "__module__": __name__,
        "__qualname__": f"Checked{cls.__qualname__}",
        "__doc__": f"{cls.__name__} under lock debugging (see threadlisten.debug).",
        "__init__": __init__,
        "__repr__": __repr__,
        "_lock_checked": True,
    }
    for name in GUARDED_ATTRIBUTES:
        namespace[name] = _guarded_slot(cls, name)
    for name in PUBLIC_METHODS:
        namespace[name] = _checked_call(_lookup(cls, name), f"{name}()")
    for name in PUBLIC_PROPERTIES:
        prop = _lookup(cls, name)
        if not isinstance(prop, property) or prop.fget is None:
            raise TypeError(f"{cls.__name__}.{name} is not a property")
        namespace[name] = property(_checked_call(prop.fget, name), doc=prop.__doc__)
    return type(f"Checked{cls.__name__}", (cls,), namespace)


def checked_listener_type(cls: type[_T]) -> type[_T]:
    """Return the checked subclass of the ``Listener`` class *cls* (made once, cached).

    In it, for THREADSAFE listeners, every read or write of guarded state
    (``GUARDED_ATTRIBUTES``) without the listener lock held by the calling
    thread raises ``LockDebugError`` (the slots of ``Listener`` are wrapped
    by properties of the same name); every public method and property checks
    on return that the caller's held locks are what they were on entry; and,
    for listeners without THREADSAFE, that the caller is the loop thread while
    the base runs.  Classes that are not ``Listener`` subclasses, and checked
    classes, are returned as they are.

    Raises:
        TypeError: *cls* replaced a guarded slot or a public property with
            something else, so it cannot be checked.

    Thread-safety: any thread.  libevent: the ``EVLOCK_ASSERT_LOCKED`` calls
    that lock debugging activates.
    """
    if not (isinstance(cls, type) and issubclass(cls, Listener)) or getattr(
        cls, "_lock_checked", False
    ):
        return cls
    with _checked_types_mutex:
        checked = _checked_types.get(cls)
        if checked is None:
            checked = _checked_types[cls] = _make_checked_type(cls)
    return cast(type[_T], checked)


# ---------------------------------------------------------------- the runtime


class DebugRuntime(DelegatingRuntime):
    """A ``Runtime`` whose locks, listener class and scheduling points are checked.

    Args:
        inner: the runtime it wraps (default: a production ``Runtime``).  Its
            locks become the real locks inside the checked ones, its
            ``point()`` runs after the checks, and its clock, selector,
            socket pairs, threads and listener class are used as they are,
            the way libevent's debug locks wrap whatever lock callbacks were
            installed before.
        lock_wait_timeout: seconds a blocking acquire of one of its locks may
            wait before it raises ``LockDebugError`` (``"lock-wait-timeout"``)
            with the holder's current stack, instead of hanging (a lock left
            held by another thread, libevent #341's symptom); None: no limit.
            Longer than any legitimate wait in the tests, shorter than the
            test suite's own timeout.

    Every ``DebugRuntime`` reports lock orders to the one process-wide graph
    (``lockdep_report()``) and errors to ``errors()``.

    Thread-safety: shared by every object built from it; every method may be
    called from any thread.  libevent: ``evthread_enable_lock_debugging``.
    """

    def __init__(
        self, inner: Runtime | None = None, *, lock_wait_timeout: float | None = 60.0
    ) -> None:
        super().__init__(inner)
        self._wait_limit = lock_wait_timeout
        self._dispatch: weakref.WeakKeyDictionary[EventBase, PseudoLock] = (
            weakref.WeakKeyDictionary()
        )
        self._dispatch_mutex = threading.Lock()
        self._checks: dict[str, Callable[[dict[str, Any]], None]] = {
            "listener.dispatched": self._loop_thread_only,
            "listener.backoff_expired": self._loop_thread_only,
            "listener.accepted": self._listener_lock_held,
            "listener.refcount": self._listener_lock_held,
            "listener.destroy": self._listener_lock_held,
            "listener.destroyed": self._listener_destroyed,
            "listener.callback_enter": self._callback_enter,
            "listener.callback_exit": self._callback_exit,
            "base.loop_enter": self._loop_enter,
            "base.loop_exit": self._loop_exit,
            "base.wait_loop": self._wait_loop,
            "base.wakeup": self._base_lock_held,
            "base.handoff": self._base_lock_held,
            "event.register": self._event_base_lock_held,
            "event.unregister": self._event_base_lock_held,
        }

    # ------------------------------------------------------------ locks

    def rlock(self, name: str) -> LockLike:
        """Return a checked recursive lock of class *name* (``debug_lock_alloc``).

        The real lock inside is the inner runtime's non-recursive ``lock(name)``;
        recursion is counted by the ``DebugLock``.  Any thread.
        """
        return DebugLock(
            name, self._inner.lock(name), recursive=True, order=_graph, wait_limit=self._wait_limit
        )

    def lock(self, name: str) -> LockLike:
        """Return a checked non-recursive lock of class *name*.

        Re-acquiring it by its owner raises ``LockDebugError`` instead of hanging.
        A class in ``GATE_CLASSES`` is left out of the lock-order checks.
        Any thread.
        """
        order = None if name in GATE_CLASSES else _graph
        return DebugLock(
            name, self._inner.lock(name), recursive=False, order=order, wait_limit=self._wait_limit
        )

    def dispatch_lock(self, base: EventBase) -> PseudoLock:
        """Return *base*'s ``base.dispatch`` pseudo-lock (made on first use, kept while
        *base* lives).

        The loop thread holds it from ``base.loop_enter`` to ``base.loop_exit``;
        ``base.wait_loop`` waits for it.  Any thread.  No libevent counterpart
        (lockdep's completions, DEPT's waits).
        """
        with self._dispatch_mutex:
            pseudo = self._dispatch.get(base)
            if pseudo is None:
                pseudo = self._dispatch[base] = PseudoLock("base.dispatch", _graph)
                pseudo.label = f"loop of base at {id(base):#x}"
            return pseudo

    def listener_type(self, cls: type[_T]) -> type[_T]:
        """Return the checked subclass of the inner runtime's listener class for *cls*.

        Cached per class (``checked_listener_type``).  Any thread.
        """
        return checked_listener_type(self._inner.listener_type(cls))

    # ---------------------------------------------------------- points

    def point(self, kind: str, **info: Any) -> None:
        """Run the check for scheduling point *kind*, then the inner runtime's point.

        Kinds and their checks (see ``POINT_KINDS`` for where each one is):

        * ``listener.dispatched``, ``listener.backoff_expired``: the caller is
          the listener's loop thread (``wrong-thread``).
        * ``listener.accepted``, ``listener.refcount``, ``listener.destroy``:
          the listener lock is held by the caller (THREADSAFE; ``not-held``).
        * ``listener.destroyed``: the caller no longer holds the listener's
          lock (``destroyed-held``; libevent's ``debug_lock_free``).  Only the
          caller: another thread may legally read ``freed`` right then.
        * ``listener.callback_enter``/``callback_exit``: the lock is held on
          entry (THREADSAFE) and the caller's held set on exit equals the one
          on entry (``unbalanced-callback``; leaked acquisitions are released).
        * ``base.loop_enter``/``base.loop_exit``: the caller holds the base's
          ``base.dispatch`` pseudo-lock between them (its acquisition is
          order-checked), and leaves the loop holding what it entered with.
        * ``base.wait_loop``: waiting for the loop thread counts as acquiring
          and releasing ``base.dispatch`` (``lock-order``).
        * ``base.wakeup``, ``base.handoff``, ``event.register``/``unregister``:
          the base lock is held.

        Raises:
            LockDebugError: a check failed (also recorded in ``errors()``).

        Thread-safety: any thread.
        """
        check = self._checks.get(kind)
        if check is not None:
            check(info)
        if self._inner_point is not None:
            self._inner_point(kind, **info)

    def _loop_thread_only(self, info: dict[str, Any]) -> None:
        listener: Listener = info["listener"]
        base = listener._base
        if not base.in_loop_thread():
            fail(
                LockDebugError(
                    f"loop-thread-only code of {_listener_name(listener)} runs on thread "
                    f"{threading.current_thread().name!r}, which is not running its base's loop",
                    check="wrong-thread",
                )
            )

    @staticmethod
    def _listener_lock(listener: Listener) -> TrackedLock | None:
        lock = _tracked(listener._lock)
        return lock if isinstance(lock, TrackedLock) else None

    def _listener_lock_held(self, info: dict[str, Any]) -> None:
        lock = self._listener_lock(info["listener"])
        if lock is not None:
            lock.assert_held()

    def _listener_destroyed(self, info: dict[str, Any]) -> None:
        listener: Listener = info["listener"]
        lock = self._listener_lock(listener)
        if lock is not None and lock.held_by_me():
            fail(
                LockDebugError(
                    f"{_listener_name(listener)} was destroyed while this thread still holds "
                    f"its lock {lock.count} more time(s): a path took the lock without "
                    "releasing it (libevent bug #341)",
                    check="destroyed-held",
                )
            )

    def _callback_enter(self, info: dict[str, Any]) -> None:
        listener: Listener = info["listener"]
        lock = self._listener_lock(listener)
        if lock is not None:
            lock.assert_held()
        _frames.stack.append(_Frame(listener, f"{info['which']} callback", held_snapshot()))

    def _callback_exit(self, info: dict[str, Any]) -> None:
        listener: Listener = info["listener"]
        which = f"{info['which']} callback"
        frame = _pop_frame(listener, which)
        if frame is not None:
            _check_balance(
                frame.before, f"the {which} of {_listener_name(listener)}", "unbalanced-callback"
            )

    def _loop_enter(self, info: dict[str, Any]) -> None:
        base: EventBase = info["base"]
        before = held_snapshot()
        # Why a hand-over.  The base marks its loop as over (``_running``
        # cleared, under its lock) *before* the ending thread reaches
        # ``base.loop_exit``, where this checker releases ``base.dispatch``.
        # In between, another thread may legally start the loop and reach
        # ``base.loop_enter`` first: the base itself guarantees one loop at a
        # time, and says so (``in_loop_thread()`` is already true for the new
        # loop thread here).  With the GIL that window was a few bytecodes and
        # never hit; on the free-threaded build two threads taking turns at
        # ``loop()`` hit it (a false "pseudo-lock-held").  So the pseudo-lock
        # is taken over, and the late ``unhold`` leaves the new holder alone.
        self.dispatch_lock(base).hold(handover=base.in_loop_thread())
        _frames.stack.append(_Frame(base, "loop", before))

    def _loop_exit(self, info: dict[str, Any]) -> None:
        base: EventBase = info["base"]
        frame = _pop_frame(base, "loop")
        if frame is None:
            return  # base.loop_enter failed (and raised): nothing is held
        self.dispatch_lock(base).unhold()
        _check_balance(frame.before, "EventBase.loop()", "unbalanced-call")

    def _wait_loop(self, info: dict[str, Any]) -> None:
        self.dispatch_lock(info["base"]).wait()

    def _base_lock_held(self, info: dict[str, Any]) -> None:
        lock = info["base"]._lock
        if isinstance(lock, TrackedLock):
            lock.assert_held()

    def _event_base_lock_held(self, info: dict[str, Any]) -> None:
        event: Event = info["event"]
        self._base_lock_held({"base": event.base})


# ------------------------------------------------------- switching it on/off

_install_mutex = threading.Lock()
_installed: DebugRuntime | None = None
_previous: Runtime | None = None


def _open_bases_on(runtime: Runtime) -> list[EventBase]:
    return [
        obj
        for obj in gc.get_objects()
        if isinstance(obj, EventBase) and obj.runtime is runtime and not obj.closed
    ]


def lock_debugging_enabled() -> bool:
    """Return True if the default runtime is a ``DebugRuntime``.

    Thread-safety: any thread.  libevent: ``evthread_lock_debugging_enabled_``.
    """
    return isinstance(get_default_runtime(), DebugRuntime)


def enable_lock_debugging() -> DebugRuntime:
    """Install a ``DebugRuntime`` wrapping the current default runtime as the default.

    Bases (and so listeners) made from now on with the default runtime are
    checked.  Calling it again while it is on returns the installed runtime.

    Returns:
        The installed ``DebugRuntime``.

    Raises:
        LockDebugError: an open ``EventBase`` built on the current default
            runtime is still alive (``check="enable-too-late"``): its locks
            would stay unchecked.  Close it (and drop it) first.  This usage
            error is raised but not recorded in ``errors()``.

    Thread-safety: any thread, but meant for start-up, before any base exists.
    libevent: ``evthread_enable_lock_debugging`` (which must likewise be
    called "BEFORE anything else").
    """
    global _installed, _previous
    with _install_mutex:
        current = get_default_runtime()
        if isinstance(current, DebugRuntime):
            return current
        live = _open_bases_on(current)
        if live:
            gc.collect()  # bases that are only garbage do not count
            live = _open_bases_on(current)
        if live:
            raise LockDebugError(
                f"enable_lock_debugging() called while {len(live)} open EventBase(s) made "
                "with the default runtime exist; their locks (and their listeners') would "
                "stay unchecked.  Enable lock debugging before creating any base or listener "
                f"(or set {ENV_VAR}=1).",
                check="enable-too-late",
            )
        runtime = DebugRuntime(current)
        set_default_runtime(runtime)
        _installed, _previous = runtime, current
        return runtime


def disable_lock_debugging() -> None:
    """Restore the default runtime that ``enable_lock_debugging()`` replaced (for tests).

    Objects built while it was on keep their checked locks.  Does nothing if
    lock debugging is off.

    Raises:
        RuntimeError: the default runtime was changed again after
            ``enable_lock_debugging()``; it is left alone.

    Thread-safety: any thread.
    """
    global _installed, _previous
    with _install_mutex:
        if _installed is None or _previous is None:
            return
        if get_default_runtime() is not _installed:
            raise RuntimeError("the default runtime was replaced after enable_lock_debugging()")
        set_default_runtime(_previous)
        _installed = _previous = None


def _env_requests_debugging(value: str | None) -> bool:
    return value is not None and value.strip().lower() in {"1", "true", "yes", "on"}


if _env_requests_debugging(os.environ.get(ENV_VAR)):
    enable_lock_debugging()
