"""Start an example app in a real server process for live tests, and stop it (whole process group)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import attrs
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("hypercorn", "native", "trio-websocket")


def free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def command(kind: str, target: str, port: int, *extra: str) -> list[str]:
    """The command line that serves ``target`` (``module:app``) with server ``kind``."""
    if kind == "hypercorn":
        return [
            sys.executable,
            "-m",
            "hypercorn",
            "--worker-class",
            "trio",
            "-b",
            f"127.0.0.1:{port}",
            *extra,
            target,
        ]
    if kind in ("native", "trio-websocket"):
        return [sys.executable, "-m", "trioapi", "run", target, "--server", kind, "--port", str(port), *extra]
    if kind == "trioapi-hypercorn":
        return [sys.executable, "-m", "trioapi", "run", target, "--port", str(port), *extra]
    raise ValueError(kind)


@attrs.define
class ServerProcess:
    """A server subprocess and the file its output goes to."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    #: The Unix socket it listens on instead of the port, if any.
    uds: str | None = None

    @property
    def output(self) -> str:
        """Everything the server printed so far."""
        return self.log_path.read_text(errors="replace")

    def url(self, path: str) -> str:
        """``ws://127.0.0.1:port/path``."""
        return f"ws://127.0.0.1:{self.port}{path}"

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Signal the whole process group and wait; kill it if it does not exit in time."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
                raise
        return self.process.returncode


def _wait_for_port(server: ServerProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{server.output}")
        try:
            if server.uds is None:
                socket.create_connection(("127.0.0.1", server.port), timeout=0.2).close()
            else:
                with socket.socket(socket.AF_UNIX) as probe:
                    probe.settimeout(0.2)
                    probe.connect(server.uds)
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server did not listen within {timeout}s:\n{server.output}")


@contextmanager
def running_server(
    kind: str, target: str, *extra: str, env: dict[str, str] | None = None, port: int | None = None
) -> Iterator[ServerProcess]:
    """Serve ``target`` on 127.0.0.1:``port`` (a free port by default) for the block; always stopped after.

    Give the port of a server stopped earlier to restart it where its clients reconnect.
    """
    port = free_port() if port is None else port
    with running_command(command(kind, target, port, *extra), port, env=env) as server:
        yield server


@contextmanager
def running_command(
    argv: list[str], port: int, *, env: dict[str, str] | None = None, uds: str | None = None
) -> Iterator[ServerProcess]:
    """Run ``argv``, a server that listens on 127.0.0.1:``port``, from the checkout's root for the block.

    ``env`` is added to this process's environment; with ``uds`` the server
    listens on that Unix socket instead of the port. The server is always stopped afterwards.
    """
    with tempfile.TemporaryDirectory() as tmp:
        log_path = Path(tmp) / "server.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                argv,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            )
        server = ServerProcess(process, port, log_path, uds)
        try:
            _wait_for_port(server, 20.0)
            yield server
        finally:
            with suppress(subprocess.TimeoutExpired):
                server.terminate()


async def hold_until_closed(
    server: ServerProcess, path: str, count: int, then: Callable[[], None]
) -> list[int]:
    """Open ``count`` sockets to ``path`` (each must greet with "ready"), call ``then()``,
    and return the close code each socket got, in the order they closed."""
    codes: list[int] = []

    async def client(ready: trio.Event) -> None:
        async with open_websocket_url(server.url(path)) as ws:
            assert await ws.get_message() == "ready"
            ready.set()
            try:
                await ws.get_message()
            except ConnectionClosed as closed:
                assert closed.reason is not None
                codes.append(closed.reason.code)
            else:
                raise AssertionError("expected the server to close the socket")

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            ready = trio.Event()
            nursery.start_soon(client, ready)
            await ready.wait()
        then()
    return codes
