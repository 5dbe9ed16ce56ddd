"""``trioapi run`` as an operator meets it: its log lines on every server, its errors, version and help."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from servers import ROOT, free_port, running_command, running_server
from trio_websocket import ConnectionClosed, HandshakeError, open_websocket_url

KINDS = ("trioapi-hypercorn", "native", "trio-websocket")


def trioapi(
    *argv: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m trioapi ...`` to completion (for commands that end by themselves)."""
    return subprocess.run(
        [sys.executable, "-m", "trioapi", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=None if env is None else {**os.environ, **env},
        check=False,
    )


async def _one_echo(url: str) -> None:
    with trio.fail_after(10):
        async with open_websocket_url(url) as ws:
            await ws.send_message("hi")
            assert await ws.get_message() == "Message text was: hi"


@pytest.mark.parametrize("kind", KINDS)
async def test_every_server_logs_one_banner_and_a_line_per_connection_in_one_format(kind: str) -> None:
    with running_server(kind, "examples.basic:app") as server:
        await _one_echo(server.url("/ws"))
        assert server.terminate() == 0
        output = server.output
    lines = [line for line in output.splitlines() if line.strip()]
    banners = [line for line in lines if "serving examples.basic:app on" in line]
    assert len(banners) == 1, lines
    accepted = [line for line in lines if '"WebSocket /ws" accepted' in line]
    code = 1006 if kind == "trioapi-hypercorn" else 1000  # hypercorn reports every client close as 1006
    closed = [line for line in lines if f'"WebSocket /ws" closed {code} by client after ' in line]
    assert len(accepted) == 1 and len(closed) == 1, lines
    assert closed[0].endswith("1 in / 1 out")
    # One format: time, level, [pid], logger, for trioapi's lines and the access log alike.
    for line in (banners[0], accepted[0], closed[0]):
        assert line.split()[2] == "INFO" and line.split()[3].startswith("["), line
    assert "Running on" not in output  # hypercorn's own banner is not printed twice
    assert "Traceback" not in output


@pytest.mark.parametrize("kind", KINDS)
async def test_json_log_lines_parse_and_carry_the_connections_facts(kind: str) -> None:
    with running_server(kind, "examples.basic:app", "--log-format", "json") as server:
        await _one_echo(server.url("/ws"))
        assert server.terminate() == 0
        output = server.output
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert records, output
    assert all({"time", "level", "logger", "pid", "message"} <= record.keys() for record in records)
    closed = [record for record in records if record.get("event") == "closed"]
    assert len(closed) == 1
    code = 1006 if kind == "trioapi-hypercorn" else 1000  # hypercorn reports every client close as 1006
    assert (closed[0]["code"], closed[0]["closed_by"], closed[0]["messages_in"]) == (code, "client", 1)
    assert closed[0]["path"] == "/ws" and closed[0]["duration"] >= 0


async def test_no_access_log_keeps_the_other_lines() -> None:
    with running_server("native", "examples.basic:app", "--no-access-log") as server:
        await _one_echo(server.url("/ws"))
        assert server.terminate() == 0
        output = server.output
    assert "serving examples.basic:app" in output
    assert "trioapi.access" not in output


async def test_a_log_config_file_replaces_the_format(tmp_path: pytest.TempPathFactory) -> None:
    config = tmp_path / "logging.json"  # type: ignore[operator]
    config.write_text(
        json.dumps(
            {
                "version": 1,
                "formatters": {"bare": {"format": "CUSTOM %(name)s %(message)s"}},
                "handlers": {"out": {"class": "logging.StreamHandler", "formatter": "bare"}},
                "loggers": {"trioapi": {"handlers": ["out"], "level": "INFO"}},
            }
        )
    )
    with running_server("native", "examples.basic:app", "--log-config", str(config)) as server:
        await _one_echo(server.url("/ws"))
        assert server.terminate() == 0
        output = server.output
    assert "CUSTOM trioapi.access " in output


async def test_workers_say_which_worker_wrote_a_line() -> None:
    with running_server("native", "examples.basic:app", "--workers", "2") as server:
        for _ in range(4):
            await _one_echo(server.url("/ws"))
        assert server.terminate() == 0
        output = server.output
    accepted = [line for line in output.splitlines() if "accepted" in line]
    assert accepted and all(" w1]" in line or " w2]" in line for line in accepted), output


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("trioapi: ")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def test_a_target_that_is_not_an_asgi_app_is_one_line() -> None:
    line = _one_line_error(trioapi("run", "json:dumps", "--port", "0"))
    assert "json:dumps is not an ASGI app" in line


def test_a_port_in_use_with_workers_is_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        line = _one_line_error(trioapi("run", "examples.basic:app", "--port", str(port), "--workers", "2"))
    assert f"cannot serve on 127.0.0.1:{port}" in line and "in use" in line


def test_a_certificate_that_cannot_be_loaded_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    line = _one_line_error(trioapi("run", "examples.basic:app", "--port", "0", "--certfile", str(missing)))
    assert f"cannot load the TLS certificate {missing}" in line


def test_a_bad_forwarded_allow_ips_is_one_line() -> None:
    allowed = "10.0.0.0/8,nginx"
    result = trioapi("run", "examples.basic:app", "--proxy-headers", "--forwarded-allow-ips", allowed)
    assert "'nginx' is not an address or a network" in _one_line_error(result)


@pytest.mark.parametrize("server", ["hypercorn", "native", "trio-websocket"])
def test_an_unreachable_redis_is_one_line_before_any_banner(server: str) -> None:
    unused = free_port()
    result = trioapi(
        "run",
        "examples.chat:app",
        "--port",
        "0",
        "--server",
        server,
        env={"BROADCAST_URL": f"redis://127.0.0.1:{unused}/0"},
    )
    line = _one_line_error(result)
    assert "could not start" in line and "BackendUnavailable" in line
    assert "serving examples.chat:app" not in result.stderr


async def test_workers_with_an_in_memory_broadcast_get_a_warning() -> None:
    def warnings(output: str) -> list[str]:
        return [line for line in output.splitlines() if "in-memory broadcast with 2 worker" in line]

    with running_server("native", "examples.chat:app", "--workers", "2") as server:
        with trio.fail_after(15):  # both workers have started their lifespan
            while len(warnings(server.output)) < 2:  # noqa: ASYNC110 - another process's output
                await trio.sleep(0.1)
        assert server.terminate() == 0
        output = server.output
    warnings = warnings(output)
    assert len(warnings) == 2 and all(" WARNING " in line for line in warnings), output
    assert "redis://" in warnings[0]


def test_version_names_trioapi_and_what_it_runs_on() -> None:
    result = trioapi("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("trioapi ") and "trio-websocket" in result.stdout


def test_help_states_every_default() -> None:
    result = trioapi("run", "--help")
    assert result.returncode == 0
    options = [line.split()[0] for line in result.stdout.splitlines() if line.startswith("  --")]
    assert "--server" in options and "--log-format" in options
    text = " ".join(result.stdout.split())
    for option in options:
        if option in ("--help", "--version", "--access-log,", "-h,"):
            continue
        block = text.split(option, 1)[1].split("  --", 1)[0]
        assert "default" in block, f"{option}: no default stated in {block!r}"


RELOADED_APP = """
from trioapi import TrioAPI, WebSocket

app = TrioAPI()


@app.websocket("/ws")
async def endpoint(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text({greeting!r})
    await websocket.receive_text()
"""


async def _greeting(port: int) -> str:
    async with open_websocket_url(f"ws://127.0.0.1:{port}/ws") as ws:
        return str(await ws.get_message())


async def test_reload_says_1001_to_open_clients_and_serves_the_new_code(tmp_path: Path) -> None:
    (tmp_path / "reloaded.py").write_text(RELOADED_APP.format(greeting="before"))
    port = free_port()
    argv = [sys.executable, "-m", "trioapi", "run", "reloaded:app", "--port", str(port)]
    argv += ["--reload", "--reload-dir", str(tmp_path)]
    with running_command(argv, port, env={"PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}) as server:
        with trio.fail_after(30):
            async with open_websocket_url(server.url("/ws")) as ws:
                assert await ws.get_message() == "before"
                (tmp_path / "reloaded.py").write_text(RELOADED_APP.format(greeting="after"))
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.get_message()
            assert closed.value.reason is not None and closed.value.reason.code == 1001
            greeting = ""
            while greeting != "after":  # the next child serves the new code, on the same port
                try:
                    greeting = await _greeting(port)
                except (OSError, ConnectionClosed, HandshakeError):
                    await trio.sleep(0.1)
        assert server.terminate() == 0
        output = server.output
    assert "reloaded.py changed: restarting" in output
    assert "Traceback" not in output


def test_reload_with_workers_is_refused_in_one_line() -> None:
    line = _one_line_error(trioapi("run", "examples.basic:app", "--reload", "--workers", "2"))
    assert "--reload serves from one process" in line
