"""Connection lifecycle of real server processes: SIGTERM says 1001 and runs teardown; dead peers are dropped.

Signals reach the master alone or the whole process group, as process managers
send them. What every transport does the same (1001 on shutdown, a crash that
spares the other connections, a peer that vanishes) is in test_transport_contract.py.
"""

from __future__ import annotations

import base64
import os
import signal
from pathlib import Path

import pytest
import trio
from servers import ROOT, ServerProcess, hold_until_closed, running_server

APP = "apps.lifecycle_app:app"
ENV = {"PYTHONPATH": str(ROOT / "tests")}
#: The servers trioapi starts itself, and hypercorn's own CLI.
SHUTDOWN_KINDS = ("trioapi-hypercorn", "native", "hypercorn")


async def _wait_for_output(server: ServerProcess, text: str, count: int = 1) -> None:
    """Poll the server's output until ``text`` appears ``count`` times (bounded by the caller)."""
    while server.output.count(text) < count:  # noqa: ASYNC110 - another process's output: polling is all there is
        await trio.sleep(0.05)


@pytest.mark.parametrize("kind", SHUTDOWN_KINDS)
@pytest.mark.parametrize("delivery", ["master", "group"])
async def test_sigterm_closes_open_sockets_with_1001_and_runs_teardown(kind: str, delivery: str) -> None:
    extra = ("--graceful-timeout", "1") if kind == "hypercorn" else ("--graceful-timeout", "3")
    with running_server(kind, APP, *extra, env=ENV) as server:

        def stop() -> None:
            if delivery == "master":  # as docker and systemd's KillMode=mixed do
                os.kill(server.process.pid, signal.SIGTERM)
            else:  # systemd's default KillMode=control-group; workers get it too
                os.killpg(server.process.pid, signal.SIGTERM)

        with trio.fail_after(20):
            codes = await hold_until_closed(server, "/hold", 3, stop)
            returncode = await trio.to_thread.run_sync(server.process.wait, 15)
        output = server.output
        assert codes == [1001, 1001, 1001]
        assert returncode == 0
        assert output.count("handler saw 1001") == 3, output
        assert output.count("teardown") == 3, output
        assert "Traceback" not in output, output


def _children(pid: int) -> dict[int, str]:
    """The child processes of ``pid`` and their command lines."""
    children = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                stat = (proc / "stat").read_text()
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                children[int(proc.name)] = cmdline.replace(b"\0", b" ").decode()
    return children


async def test_a_hypercorn_worker_signalled_alone_says_goodbye_then_ends() -> None:
    """SIGTERM to hypercorn's worker only: nothing else will stop it, so after its goodbye it ends itself."""
    env = {**ENV, "LIFECYCLE_EXIT_AFTER_GOODBYE": "0.5"}
    with running_server("hypercorn", APP, "--graceful-timeout", "1", env=env) as server:
        workers = [pid for pid, cmd in _children(server.process.pid).items() if "resource_tracker" not in cmd]
        assert len(workers) == 1, _children(server.process.pid)
        with trio.fail_after(20):
            codes = await hold_until_closed(server, "/hold", 3, lambda: os.kill(workers[0], signal.SIGTERM))
            returncode = await trio.to_thread.run_sync(server.process.wait, 15)
        output = server.output
        assert codes == [1001, 1001, 1001]
        assert output.count("handler saw 1001") == 3, output
        assert output.count("teardown") == 3, output
        assert "did not stop this worker after its goodbye" in output, output
        # The worker ended (of SIGTERM, its default action), and with it hypercorn's master
        # (which, in 0.18, exits with 0 all the same when its last worker failed).
        with pytest.raises(ProcessLookupError):
            os.kill(workers[0], 0)
        assert returncode == 0
        assert "Traceback" not in output, output


@pytest.mark.parametrize("kind", ["trioapi-hypercorn", "native"])
async def test_a_peer_that_never_answers_pings_is_dropped(kind: str) -> None:
    options = ("--ping-interval", "0.2", "--idle-timeout", "1")
    with running_server(kind, APP, *options, env=ENV) as server:
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        await _handshake(stream, "/hold")
        # Never read again: pings go unanswered.
        with trio.fail_after(10):
            await _wait_for_output(server, "handler saw 1006")
        await stream.aclose()
        assert "teardown" in server.output
        assert "Traceback" not in server.output


async def _handshake(stream: trio.SocketStream, path: str) -> None:
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await stream.send_all(request.encode())
    response = b""
    while b"\r\n\r\n" not in response:
        response += await stream.receive_some(4096)
    assert response.startswith(b"HTTP/1.1 101"), response
