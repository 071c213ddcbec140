"""The fake sockets, selector and clock behave as the core expects.

Each test runs one schedule (``ReplayChooser("s1:")``: never preempt) and
asserts inside the scenario.
"""

from __future__ import annotations

import errno
from typing import Any

import pytest

from threadlisten import LEV_OPT, Listener
from threadlisten.testing import (
    Explorer,
    FakeConnection,
    ReplayChooser,
    SchedRuntime,
    ScheduleFailure,
    as_fake,
)

FLAGS = LEV_OPT.THREADSAFE | LEV_OPT.CLOSE_ON_FREE


def run(scenario: Any) -> None:
    Explorer(ReplayChooser("s1:")).run(scenario)


def test_from_socket_sees_the_fake_listening_state() -> None:
    def scenario(rt: SchedRuntime) -> None:
        base = rt.new_base()
        lsock = rt.listening_socket()
        with pytest.raises(ValueError, match="already listening"):
            Listener.from_socket(base, lsock, None, backlog=0)
        lsock.listen()
        lev = Listener.from_socket(base, lsock, None, backlog=0, flags=FLAGS)
        assert lsock.getblocking() is False  # the core made it non-blocking
        assert lev.socket.getsockname() == ("127.0.0.1", lsock.port)
        lev.free()
        assert lsock.fake_closed and lsock.fileno() == -1
        base.close()

    run(scenario)


def test_close_resets_queued_clients_and_refuses_new_ones() -> None:
    def scenario(rt: SchedRuntime) -> None:
        lsock = rt.listening_socket()
        with pytest.raises(ConnectionRefusedError):
            lsock.connect_client()  # not listening yet
        lsock.listen()
        lsock.setblocking(False)
        first = lsock.connect_client()
        second = lsock.connect_client()
        conn, address = lsock.accept()
        assert as_fake(conn) is first and first.state == "accepted"
        assert address == first.address
        lsock.close()
        assert second.state == "reset"
        with pytest.raises(ConnectionRefusedError):
            lsock.connect_client()
        with pytest.raises(OSError) as info:
            lsock.accept()
        assert info.value.errno == errno.EBADF

    run(scenario)


def test_timers_fire_on_the_fake_clock() -> None:
    def scenario(rt: SchedRuntime) -> None:
        base = rt.new_base()
        fired: list[float] = []
        base.call_later(5.0, lambda: fired.append(rt.monotonic()))
        assert rt.monotonic() == 0.0
        base.loop(once=True)  # select(timeout=5) runs: nothing ready, the clock jumps
        assert fired == [5.0]
        rt.advance(2.5)
        assert rt.monotonic() == 7.5
        base.close()

    run(scenario)


def test_accept_errors_take_their_place_in_the_backlog() -> None:
    def scenario(rt: SchedRuntime) -> None:
        base = rt.new_base()
        lsock = rt.listening_socket()
        got: list[int] = []
        errors: list[int | None] = []

        def cb(listener: Listener, sock: Any, address: Any, arg: Any) -> None:
            got.append(as_fake(sock).id)

        lev = Listener.from_socket(base, lsock, cb, flags=FLAGS)
        lev.set_error_cb(lambda listener, error, arg: errors.append(error.errno))
        lsock.queue_error(errno.ECONNABORTED)  # per connection: skipped silently
        lsock.connect_client()
        lsock.queue_error(errno.EMFILE)  # resource: back-off, reported
        lsock.connect_client()
        base.loop(nonblock=True)
        assert got == [1] and errors == [errno.EMFILE]
        assert lev.backing_off
        rt.advance(1.0)
        base.loop(nonblock=True)  # the back-off timer re-arms the listener
        base.loop(nonblock=True)
        assert got == [1, 2] and not lev.backing_off
        assert [item for item in lsock.queued() if isinstance(item, FakeConnection)] == []
        lev.free()
        base.close()

    run(scenario)


def test_a_loop_left_running_is_reported() -> None:
    def scenario(rt: SchedRuntime) -> None:
        base = rt.new_base()
        rt.spawn(base.dispatch, "loop")  # never stopped

    with pytest.raises(ScheduleFailure) as info:
        run(scenario)
    assert info.value.kind == "deadlock"
    assert "a loop thread nobody stopped?" in str(info.value)
