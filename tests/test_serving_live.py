"""Serving from the command line and ``trioapi.serve``: limits, workers, lifespan failures, handshakes, pings.

What every transport does the same (close codes, 1001 on shutdown, ...) is in
test_transport_contract.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
from functools import partial

import pytest
import trio
from servers import ROOT, ServerProcess, command, free_port, hold_until_closed, running_server
from test_lifecycle_live import _children
from trio_websocket import ConnectionClosed, open_websocket_url

import trioapi
from examples import basic

ENV = {"PYTHONPATH": str(ROOT / "tests")}


@pytest.mark.parametrize("kind", ["trioapi-hypercorn", "native"])
async def test_a_message_over_the_size_limit_closes_with_1009(kind: str) -> None:
    with running_server(kind, "examples.basic:app", "--max-message-size", "1000") as server:
        with trio.fail_after(10):
            async with open_websocket_url(server.url("/ws")) as ws:
                await ws.send_message("small")
                assert await ws.get_message() == "Message text was: small"
                await ws.send_message("x" * 5000)
                with pytest.raises(ConnectionClosed) as info:
                    await ws.get_message()
        assert info.value.reason.code == 1009
        assert server.terminate() == 0
        assert "Traceback" not in server.output


@pytest.mark.parametrize("kind", ["trioapi-hypercorn", "native", "hypercorn"])
@pytest.mark.parametrize("delivery", ["master", "group"])
async def test_workers_share_the_port_and_stop_together(kind: str, delivery: str) -> None:
    # "group" is systemd's default KillMode: every worker gets SIGTERM from systemd
    # and again from the supervisor, and must still finish its goodbye. hypercorn's own
    # master, signalled alone, terminates (SIGTERM) the workers left once the first has
    # exited: without the app's handler there, a worker still holding connections died
    # (1006, no teardown) whichever way the server was stopped.
    with running_server(kind, "apps.lifecycle_app:app", "--workers", "2", env=ENV) as server:

        def terminate() -> None:
            if delivery == "master":
                os.kill(server.process.pid, signal.SIGTERM)
            else:
                os.killpg(server.process.pid, signal.SIGTERM)

        with trio.fail_after(20):
            codes = await hold_until_closed(server, "/hold", 6, terminate)
            returncode = await trio.to_thread.run_sync(server.process.wait, 15)
        assert codes == [1001] * 6
        assert returncode == 0
        assert server.output.count("teardown") == 6
        assert "Traceback" not in server.output


@pytest.mark.parametrize("kind", ["trioapi-hypercorn", "native"])
def test_a_failing_lifespan_stops_the_server_with_a_clear_message(kind: str) -> None:
    result = subprocess.run(
        command(kind, "apps.lifecycle_app:broken_app", free_port()),
        cwd=ROOT,
        env={**os.environ, **ENV},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "could not start" in result.stderr
    assert "database at 127.0.0.1:1 is unreachable" in result.stderr


async def test_native_handshake_may_arrive_in_pieces_but_not_never() -> None:
    with running_server("native", "examples.basic:app", "--handshake-timeout", "1") as server:
        with trio.fail_after(10):
            slow = await trio.open_tcp_stream("127.0.0.1", server.port)
            async with slow:
                await slow.send_all(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
                await trio.sleep(0.2)
                await slow.send_all(
                    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    b"Sec-WebSocket-Version: 13\r\n\r\n"
                )
                assert (await slow.receive_some(4096)).startswith(b"HTTP/1.1 101")
            silent = await trio.open_tcp_stream("127.0.0.1", server.port)
            async with silent:
                # Nothing sent: the server drops the connection after the handshake timeout.
                assert await silent.receive_some(4096) == b""


def _run_to_its_end(target: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """``trioapi run target`` until it exits by itself (bounded), with what it printed."""
    return subprocess.run(
        command("trioapi-hypercorn", target, free_port(), *extra),
        cwd=ROOT,
        env={**os.environ, **ENV},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_workers_that_fail_to_start_make_the_supervisor_fail() -> None:
    result = _run_to_its_end("apps.lifecycle_app:broken_app", "--workers", "2")
    assert result.returncode == 1
    assert "could not start" in result.stderr


async def test_native_pings_without_an_idle_timeout_keep_a_live_client() -> None:
    stop = trio.Event()
    config = trioapi.server.ServerConfig(ping_interval=0.05, idle_timeout=None)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(
            partial(
                trioapi.serve, basic.app, port=0, server="native", config=config, shutdown_trigger=stop.wait
            )
        )
        async with open_websocket_url(f"ws://127.0.0.1:{port}/ws") as ws:
            await trio.sleep(0.3)  # several keepalive rounds, answered by the client's reader
            await ws.send_message("still here")
            assert await ws.get_message() == "Message text was: still here"
        stop.set()


async def test_a_worker_that_dies_is_replaced_and_serving_goes_on() -> None:
    with running_server("trioapi-hypercorn", "apps.lifecycle_app:app", "--workers", "2", env=ENV) as server:
        with trio.fail_after(30):
            await _echo(server)
            first = set(_children(server.process.pid))
            assert len(first) == 2, first
            os.kill(min(first), signal.SIGKILL)
            while len(set(_children(server.process.pid)) - first) < 1:  # noqa: ASYNC110 - other processes
                await trio.sleep(0.1)
            for _ in range(4):  # both workers, the new one among them, serve
                await _echo(server)
        assert server.terminate() == 0
        assert "exited unexpectedly (killed by SIGKILL); starting another in 0.5 s" in server.output


def test_a_crash_loop_stops_the_supervisor_with_a_clear_message() -> None:
    result = _run_to_its_end("apps.crashing_app:app", "--workers", "2")
    assert result.returncode == 1
    assert "starting another in" in result.stderr
    assert "within 60 s (the last" in result.stderr
    assert result.stderr.count("a crash loop; stopping") == 1


async def _echo(server: ServerProcess) -> None:
    async with open_websocket_url(server.url("/echo/w")) as ws:
        await ws.send_message("hi")
        assert await ws.get_message() == "w:hi"
