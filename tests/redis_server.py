"""A real ``redis-server`` on an ephemeral 127.0.0.1 port, for the broadcast tests.

Not skipped when ``redis-server`` is missing: CI installs it, and a silently
skipped Redis suite would hide a broken multi-process setup.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
from servers import free_port


def kill_process_group(process: subprocess.Popen[bytes]) -> None:
    """Stop ``process`` and everything it started (it was started with ``start_new_session``)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
            os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


class RedisServer:
    """One ``redis-server`` without persistence; ``stop`` and ``start`` keep the port."""

    def __init__(self) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError("redis-server is not installed: apt-get install -y redis-server")
        self.executable = executable
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server and wait (at most 10 s) until it answers PING."""
        self._process = subprocess.Popen(
            [
                self.executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self._process.returncode}")
            if self.ping():
                return
            time.sleep(0.02)
        raise RuntimeError(f"redis-server did not answer PING on port {self.port} within 10 s")

    def ping(self) -> bool:
        """``True`` if the server answers PING."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """Kill the server (as a crash would: no goodbye to clients)."""
        if self._process is not None:
            kill_process_group(self._process)
            self._process = None


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A running Redis, killed after the test whatever happens."""
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
