"""The sequential model of a THREADSAFE listener, for the stateful suite.

The model is what a listener does when every call is atomic and takes effect
in the order the test makes it (the contract in ``threadlisten.listener``'s
docstring).  It has no threads, no sockets and no clock: the machine in
``test_listener_machine.py`` drives the real listener and this model with the
same steps, then compares them.

What a user callback does is data (``CbSpec``), drawn by Hypothesis before the
step that may run it.  Every callback records the connection it received and
closes it; then it does its *action* (``"record"``: nothing more), unless a
one-shot *pending effect* was arranged for the next delivery, in which case it
does that instead (an ``Op`` on its own listener, or ``GATE``: wait until the
test lets it go).

Each delivery is deterministic: the model accepts queued connections one at a
time while the listener may accept (enabled, a callback, not freed), and
hands each one to the callback installed at that moment.  Batching
(``max_accepts``) changes how many loop rounds that takes, never the sequence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

from threadlisten import LEV_OPT

__all__ = [
    "ACTIONS",
    "FREED",
    "GATE",
    "OK",
    "Action",
    "CbSpec",
    "Model",
    "ModelCb",
    "ModelListener",
    "ModelOp",
    "Op",
    "OpKind",
    "Outcome",
    "Pending",
]

#: What a callback does after recording and closing its connection:
#: ``record`` nothing more; ``disable``/``free`` its listener; ``swap`` its
#: listener's callback for a successor drawn with it; ``set_cb_none``;
#: ``raise`` an exception the test expects to see logged; ``block`` briefly
#: (a bounded wait on an Event nobody sets).
Action = Literal["record", "disable", "free", "swap", "set_cb_none", "raise", "block"]
ACTIONS: Final[tuple[Action, ...]] = (
    "record",
    "disable",
    "free",
    "swap",
    "set_cb_none",
    "raise",
    "block",
)

OpKind = Literal["enable", "disable", "set_cb", "set_error_cb", "free"]

#: The result of a call: it returned, or raised ``ListenerFreedError``.
Outcome = Literal["ok", "ListenerFreedError"]
OK: Final = "ok"
FREED: Final = "ListenerFreedError"


class _Gate:
    """The pending effect "wait in the callback until the test releases it"."""

    def __repr__(self) -> str:
        return "GATE"


#: A one-shot pending effect: the next callback blocks, holding the batch.
GATE: Final = _Gate()


@dataclass(frozen=True)
class CbSpec:
    """A drawn accept callback: its action, its argument id, and for ``swap``
    the callback it installs in its place (never itself a ``swap``)."""

    action: Action
    arg_id: int
    then: CbSpec | None = None


@dataclass(frozen=True)
class Op:
    """A drawn call on a listener.  ``cb`` is ``set_cb``'s callback (``None``
    means ``set_cb(None)``); ``errcb_id`` is ``set_error_cb``'s (``None``: unset)."""

    kind: OpKind
    cb: CbSpec | None = None
    errcb_id: int | None = None


@dataclass(frozen=True)
class ModelCb:
    """A callback made from a ``CbSpec``, with the unique id the test gave it."""

    cb_id: int
    arg_id: int
    action: Action
    then: ModelCb | None


@dataclass(frozen=True)
class ModelOp:
    """An ``Op`` whose callback has been made (ids assigned)."""

    kind: OpKind
    cb: ModelCb | None = None
    errcb_id: int | None = None


Pending = ModelOp | _Gate


@dataclass
class ModelListener:
    """The sequential state of one listener."""

    lid: int
    flags: LEV_OPT
    max_accepts: int
    cb: ModelCb | None
    enabled: bool
    errorcb: int | None = None
    freed: bool = False
    #: Connections in the kernel's backlog that nobody accepted yet.
    queued: int = 0
    #: ``(cb_id, arg_id)`` of every delivery, in order.
    deliveries: list[tuple[int, int]] = field(default_factory=list)
    #: Accepted connections the listener closed itself instead of delivering
    #: them: only when ``setblocking`` fails, which never happens here.
    closed_by_listener: int = 0
    #: Callbacks that raised on purpose (each one logs an ERROR record).
    raises: int = 0
    #: The effect of the next delivery, instead of the callback's action.
    pending: Pending | None = None
    #: Outcomes of the pending ops that callbacks performed, in order.
    callback_outcomes: list[Outcome] = field(default_factory=list)

    @property
    def close_on_free(self) -> bool:
        return bool(self.flags & LEV_OPT.CLOSE_ON_FREE)

    @property
    def socket_open(self) -> bool:
        """Whether the listening socket is still open (and so still listening)."""
        return not (self.freed and self.close_on_free)

    @property
    def destroyed(self) -> bool:
        """Destroyed: once quiescent, exactly when freed (no batch holds a reference)."""
        return self.freed

    @property
    def delivered(self) -> int:
        return len(self.deliveries)

    def can_accept(self) -> bool:
        """Whether a connection in the backlog is accepted and delivered now."""
        return self.enabled and self.cb is not None and not self.freed

    def apply(self, op: ModelOp) -> Outcome:
        """Perform *op* atomically; return what the call returns or raises."""
        if self.freed:
            return FREED
        if op.kind == "enable":
            self.enabled = True
        elif op.kind == "disable":
            self.enabled = False
        elif op.kind == "set_cb":
            self.cb = op.cb
        elif op.kind == "set_error_cb":
            self.errorcb = op.errcb_id
        else:
            self.freed = True
            self.cb = None
            self.errorcb = None
        return OK

    def connect(self, n: int) -> None:
        """*n* clients connect: they queue, then whatever may be delivered is."""
        self.queued += n
        self.drain()

    def drain(self) -> None:
        """Deliver queued connections one by one while the listener may accept."""
        while self.queued and self.can_accept():
            self.queued -= 1
            self._deliver()

    def _deliver(self) -> None:
        cb = self.cb
        assert cb is not None
        self.deliveries.append((cb.cb_id, cb.arg_id))
        pending, self.pending = self.pending, None
        if isinstance(pending, ModelOp):
            self.callback_outcomes.append(self.apply(pending))
            return
        if pending is not None:  # GATE: the callback waits, then returns
            return
        action = cb.action
        if action == "disable":
            self.apply(ModelOp("disable"))
        elif action == "free":
            self.apply(ModelOp("free"))
        elif action == "swap":
            assert cb.then is not None
            self.apply(ModelOp("set_cb", cb.then))
        elif action == "set_cb_none":
            self.apply(ModelOp("set_cb", None))
        elif action == "raise":
            self.raises += 1


@dataclass
class Model:
    """Every listener of one example, and the ids handed out so far."""

    listeners: list[ModelListener] = field(default_factory=list)
    next_cb_id: int = 0

    def make_cb(self, spec: CbSpec) -> ModelCb:
        """Give *spec* (and its successor) fresh callback ids."""
        cb_id = self.next_cb_id
        self.next_cb_id += 1
        then = None if spec.then is None else self.make_cb(spec.then)
        return ModelCb(cb_id, spec.arg_id, spec.action, then)

    def make_op(self, op: Op) -> ModelOp:
        cb = None if op.cb is None else self.make_cb(op.cb)
        return ModelOp(op.kind, cb, op.errcb_id)

    def add(self, flags: LEV_OPT, max_accepts: int, cb: ModelCb | None) -> ModelListener:
        """A listener was made with *flags* and callback *cb*."""
        m = ModelListener(
            lid=len(self.listeners),
            flags=flags,
            max_accepts=max_accepts,
            cb=cb,
            enabled=not flags & LEV_OPT.DISABLED,
        )
        self.listeners.append(m)
        return m
