"""The command line, the echo server, the demo and the example, run for real.

Each program runs in a subprocess (``sys.executable``) with a timeout, and is
killed if a test fails before it ends.  The echo server is also run in-process,
where the autouse leak fixture checks that shutting it down with connections
still open leaves no descriptor and no thread behind.
"""

from __future__ import annotations

import contextlib
import re
import selectors
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from threadlisten.cli import main
from threadlisten.echo import EchoServer

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "01_echo_server.py"

#: Seconds a subprocess gets to start, and to end after a signal.
START_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0
#: Seconds the demo gets in all (it takes about one).
DEMO_TIMEOUT = 90.0
#: Timeout of every client socket operation.
IO_TIMEOUT = 10.0

_LISTENING = re.compile(r"^listening on (\S+):(\d+)$")


# ------------------------------------------------------------------ helpers


def _read_first_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """The first line the process prints, without waiting more than *timeout*."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise AssertionError(f"no output within {timeout} s")
    return proc.stdout.readline()


@contextlib.contextmanager
def _server(args: list[str]) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """Start a server that prints ``listening on HOST:PORT``; yield it and the port.

    On the way out the process is killed if it still runs, and its pipes closed.
    """
    with subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            line = _read_first_line(proc, START_TIMEOUT).strip()
            match = _LISTENING.match(line)
            assert match, f"unexpected first line {line!r}"
            assert match.group(1) == "127.0.0.1"
            yield proc, int(match.group(2))
        finally:
            if proc.returncode is None:
                proc.kill()
                proc.communicate(timeout=STOP_TIMEOUT)


def _stop(proc: subprocess.Popen[str], signum: int) -> tuple[int, str]:
    """Send *signum*; return the exit status and what was printed on stderr."""
    proc.send_signal(signum)
    try:
        _, err = proc.communicate(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=STOP_TIMEOUT)
        name = signal.Signals(signum).name
        raise AssertionError(f"no exit within {STOP_TIMEOUT} s of {name}") from None
    return proc.returncode, err


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run a program to its end (killed after *timeout* seconds)."""
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    buf = bytearray()
    while len(buf) < size:
        chunk = sock.recv(min(65536, size - len(buf)))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def _ping_pong(port: int, index: int, rounds: int, errors: list[str]) -> None:
    """One client: several messages on one connection, each echoed before the next."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as sock:
            for n in range(rounds):
                message = f"client {index} message {n} ".encode() * (n + 1)
                sock.sendall(message)
                echo = _recv_exactly(sock, len(message))
                if echo != message:
                    errors.append(f"client {index} round {n}: got {echo[:40]!r}")
                    return
            sock.shutdown(socket.SHUT_WR)
            if sock.recv(1) != b"":
                errors.append(f"client {index}: data after the echo")
    except OSError as exc:
        errors.append(f"client {index}: {exc!r}")


def _echo_large(port: int, size: int) -> None:
    """Send *size* bytes while reading the echo back.

    A small receive buffer and a small MSS (which keeps the server's send
    buffer small: Linux sizes it from the peer's MSS) make the server's sends
    come up short, so the echo goes through its partial-write path.
    """
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        with contextlib.suppress(AttributeError, OSError):  # Linux's TCP_MAXSEG
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
        sock.settimeout(IO_TIMEOUT)
        sock.connect(("127.0.0.1", port))
        send_errors: list[BaseException] = []

        def send() -> None:
            try:
                sock.sendall(payload)
            except OSError as exc:
                send_errors.append(exc)

        sender = threading.Thread(target=send, name="test-sender")
        sender.start()
        try:
            echo = _recv_exactly(sock, size)
        finally:
            sender.join(IO_TIMEOUT * 2)
        assert not sender.is_alive(), "the sender is stuck"
        assert not send_errors, send_errors
        assert len(echo) == size, f"only {len(echo)} of {size} bytes came back"
        assert echo == payload, "the large echo differs from what was sent"


def _echo_clients(port: int) -> None:
    """Several concurrent ping-pong clients, then one 1 MB transfer."""
    errors: list[str] = []
    clients = [
        threading.Thread(target=_ping_pong, args=(port, i, 5, errors), name=f"test-client-{i}")
        for i in range(6)
    ]
    for t in clients:
        t.start()
    for t in clients:
        t.join(IO_TIMEOUT * 3)
    assert not any(t.is_alive() for t in clients), "a client is stuck"
    assert not errors, errors
    _echo_large(port, 1 << 20)


_SERVED = re.compile(r"(\d+) connections served, (\d+) bytes echoed, (\d+) partial writes")


# ------------------------------------------------------------------ the CLI


def test_help_runs() -> None:
    result = _run(["-m", "threadlisten", "--help"], timeout=START_TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert "echo" in result.stdout and "demo" in result.stdout


def test_main_in_process_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "demo" in capsys.readouterr().out
    assert main(["echo", "--help"]) == 0
    assert "--port" in capsys.readouterr().out
    assert main([]) == 2  # a command is required
    assert main(["echo", "--port", "65536"]) == 2
    assert main(["demo", "--connections", "0"]) == 2
    assert main(["demo", "--free-at", "1.5"]) == 2
    capsys.readouterr()


# ------------------------------------------------------------------ echo


def test_echo_serves_clients_and_exits_0_on_sigint() -> None:
    with _server(["-m", "threadlisten", "echo", "--port", "0"]) as (proc, port):
        _echo_clients(port)
        # An idle connection left open: the shutdown must close it.
        with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as idle:
            idle.sendall(b"ping")
            assert _recv_exactly(idle, 4) == b"ping"
            status, err = _stop(proc, signal.SIGINT)
            assert idle.recv(1) == b""  # closed by the server's shutdown
    assert status == 0, err
    assert "Traceback" not in err, err
    served = _SERVED.search(err)
    assert served, err
    connections, echoed, partial = map(int, served.groups())
    assert connections == 8
    ping_pong_bytes = sum(
        len(f"client {i} message {n} ") * (n + 1) for i in range(6) for n in range(5)
    )
    assert echoed == ping_pong_bytes + (1 << 20) + len(b"ping")
    if sys.platform.startswith("linux"):  # where TCP_MAXSEG shrinks the server's send buffer
        assert partial > 0, "the 1 MB echo should not have gone out in whole sends"


def test_echo_exits_0_on_sigterm() -> None:
    with _server(["-m", "threadlisten", "echo", "--port", "0"]) as (proc, port):
        with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as sock:
            sock.sendall(b"hello\n")
            assert _recv_exactly(sock, 6) == b"hello\n"
        status, err = _stop(proc, signal.SIGTERM)
    assert status == 0, err
    assert "SIGTERM" in err


def test_echo_port_in_use_exits_1() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _run(["-m", "threadlisten", "echo", "--port", str(port)], timeout=START_TIMEOUT)
    assert result.returncode == 1
    assert "Couldn't create listener" in result.stderr
    assert result.stdout == ""


def test_echo_server_in_process_closes_everything() -> None:
    with EchoServer("127.0.0.1", 0) as server:
        host, port = server.start()
        assert host == "127.0.0.1" and port != 0
        errors: list[str] = []
        _ping_pong(port, 0, 3, errors)
        assert not errors, errors
        idle = socket.create_connection((host, port), timeout=IO_TIMEOUT)
        with idle:
            idle.sendall(b"x")
            assert idle.recv(1) == b"x"
            assert not server.wait(0.01)  # still serving
            server.close()  # frees the listener, stops the loop, closes `idle`'s peer
            assert idle.recv(1) == b""
        server.close()  # twice is fine
    assert server.stats.connections == 2
    assert server.stats.closed == 2
    assert server.error is None


# ------------------------------------------------------------------ demo

_DEMO_ARGS = [
    "-m",
    "threadlisten",
    "demo",
    "--connections",
    "120",
    "--clients",
    "4",
    "--workers",
    "2",
    "--queue",
    "4",
    "--burst",
    "8",
    "--duration",
    "0.5",
    "--seed",
    "7",
]


def _summary_value(text: str, label: str) -> str:
    match = re.search(rf"^\s*{re.escape(label)}\s+(.+?)\s*$", text, re.MULTILINE)
    assert match, f"no {label!r} in the summary:\n{text}"
    return match.group(1)


def test_demo_plain_succeeds_and_reports() -> None:
    result = _run([*_DEMO_ARGS, "--plain"], timeout=DEMO_TIMEOUT)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "result: OK" in out
    accepted = int(_summary_value(out, "accepted by the listener").split()[0])
    verified = int(_summary_value(out, "verified by clients").split()[0])
    echoed = int(_summary_value(out, "echoed by workers").split()[0])
    assert accepted == verified == echoed > 0
    fds = re.match(r"(\d+) / (\d+)", _summary_value(out, "descriptors before / after"))
    assert fds and fds.group(1) == fds.group(2), out
    threads = re.match(r"(\d+) / (\d+)", _summary_value(out, "threads before / after"))
    assert threads and threads.group(1) == threads.group(2), out
    # A burst of 8 from one client exceeds queue 4 + 2 busy workers, so the
    # callback must have paused the listener, and a worker resumed it.
    pauses = re.match(r"(\d+) / (\d+)", _summary_value(out, "pauses / resumes"))
    assert pauses and int(pauses.group(1)) >= 1 and int(pauses.group(2)) >= 1, out
    assert _summary_value(out, "handler swaps").startswith("1")
    assert _summary_value(out, "peak refcount in callbacks").startswith("2")
    assert _summary_value(out, "refcount after free").startswith("0")
    assert int(_summary_value(out, "connections attempted").split()[0]) == 120


def test_demo_default_display_succeeds() -> None:
    pytest.importorskip("rich")
    result = _run([*_DEMO_ARGS, "--connections", "60"], timeout=DEMO_TIMEOUT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "result: OK" in result.stdout


# ------------------------------------------------------------------ the example


def test_example_self_test() -> None:
    result = _run([str(EXAMPLE), "--self-test"], timeout=DEMO_TIMEOUT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "300000 bytes echoed" in result.stdout


def test_example_serves_until_sigint() -> None:
    with _server([str(EXAMPLE), "--port", "0"]) as (proc, port):
        errors: list[str] = []
        _ping_pong(port, 0, 3, errors)
        assert not errors, errors
        status, err = _stop(proc, signal.SIGINT)
    assert status == 0, err
    assert "Traceback" not in err, err
