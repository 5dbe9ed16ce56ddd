"""The deployment guide's snippets work: the systemd unit, the Dockerfile and the nginx site.

Each is checked with its own tool where this machine has it (``systemd-analyze
verify``, ``nginx -t``, ``docker build`` only where a Docker engine answers),
and the command each one runs is run here: the chat is served as the snippet
says (on a free 127.0.0.1 port instead of its public one), a client talks to
it, and the stop signal the snippet arranges gives that client 1001.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from redis_server import RedisServer, redis_server  # noqa: F401 -- the fixture
from servers import ROOT, ServerProcess, free_port, running_command, running_server
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

SNIPPETS = ROOT / "docs" / "snippets"
UNIT = SNIPPETS / "chat.service"
DOCKERFILE = SNIPPETS / "Dockerfile"
NGINX = SNIPPETS / "nginx.conf"
TRIOAPI = [sys.executable, "-m", "trioapi"]


def replaced(text: str, old: str, new: str) -> str:
    """``text`` with its one ``old`` replaced: the test breaks, loudly, if the snippet changed shape."""
    assert text.count(old) == 1, f"expected {old!r} once in the snippet"
    return text.replace(old, new)


def missing_flags(argv: list[str]) -> list[str]:
    """The ``--flags`` in ``argv`` that this checkout's ``trioapi run`` does not know (yet)."""
    helped = subprocess.run(
        [*TRIOAPI, "run", "--help"], capture_output=True, text=True, check=True, timeout=30
    )
    return [arg for arg in argv if arg.startswith("--") and arg not in helped.stdout]


@contextmanager
def chat_client(
    port: int, name: str, ssl_context: ssl.SSLContext | None = None
) -> Iterator[ClientConnection]:
    """A chat client in the lobby, once the server said it joined (``wss://`` with ``ssl_context``)."""
    scheme = "wss" if ssl_context else "ws"
    with connect(f"{scheme}://127.0.0.1:{port}/ws/lobby/{name}", open_timeout=10, ssl=ssl_context) as client:
        events = [json.loads(client.recv(timeout=10)) for _ in range(2)]  # "joined" and a presence update
        assert {"type": "joined", "client": name} in events
        yield client


def close_code_after(client: ClientConnection, server: ServerProcess, sig: int) -> int:
    """Send ``sig`` to the server's main process alone; the close code its client then receives."""
    os.kill(server.process.pid, sig)
    with pytest.raises(ConnectionClosed) as info:
        for _ in range(20):  # presence updates as others leave, then the close
            client.recv(timeout=15)
    assert info.value.rcvd is not None
    return info.value.rcvd.code


# -- systemd ------------------------------------------------------------------------------


def unit_settings() -> dict[str, str]:
    """``Key=value`` lines of the unit (none is repeated in it)."""
    lines = [line for line in UNIT.read_text().splitlines() if "=" in line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    # verify also checks that ExecStart's program exists: point it at this Python.
    program = shlex.split(unit_settings()["ExecStart"])[0]
    unit = tmp_path / UNIT.name
    unit.write_text(replaced(UNIT.read_text(), f"ExecStart={program} ", f"ExecStart={sys.executable} "))
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    # A misspelt setting is only a warning, "ignoring" it: any output fails the test.
    assert (verify.returncode, verify.stdout + verify.stderr) == (0, "")


def test_the_systemd_unit_signals_trioapi_alone_and_waits_longer_than_its_goodbye() -> None:
    settings = unit_settings()
    # mixed: SIGTERM to the main process only (trioapi run forwards it to its workers once),
    # SIGKILL to the whole group only after TimeoutStopSec. control-group (the default)
    # also ends in 1001; process would leave the workers running after a timeout.
    assert settings["KillMode"] == "mixed"
    assert settings["KillSignal"] == "SIGTERM"
    argv = shlex.split(settings["ExecStart"])
    graceful = float(argv[argv.index("--graceful-timeout") + 1]) if "--graceful-timeout" in argv else 5.0
    # The supervisor waits graceful + 5 s for its workers before it kills them itself.
    assert float(settings["TimeoutStopSec"]) > graceful + 5


def test_the_systemd_units_command_serves_the_chat_and_sigterm_gives_its_clients_1001(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    settings = unit_settings()
    argv = shlex.split(settings["ExecStart"])[1:]
    if missing := missing_flags(argv):
        pytest.skip(f"trioapi run does not have {', '.join(missing)} yet (issue 20, item 3)")
    port = free_port()
    argv[argv.index("--port") + 1] = str(port)
    name, _, value = settings["Environment"].partition("=")
    assert (name, value) == ("BROADCAST_URL", "redis://127.0.0.1:6379/0")
    with running_command([*TRIOAPI, *argv], port, env={name: redis_server.url}) as server:
        with chat_client(port, "ann") as client:
            assert close_code_after(client, server, signal.SIGTERM) == 1001  # KillMode=mixed
        assert server.process.wait(timeout=float(settings["TimeoutStopSec"])) == 0
        assert "Traceback" not in server.output


# -- Docker -------------------------------------------------------------------------------


def dockerfile() -> dict[str, str]:
    """Each instruction of the Dockerfile and its arguments (the last one of each kind)."""
    text = re.sub(r"\\\n\s*", "", DOCKERFILE.read_text())
    lines = [line.split(None, 1) for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return {instruction.upper(): arguments for instruction, arguments in lines}


def test_the_dockerfile_runs_unprivileged_with_a_stop_signal_and_a_health_check() -> None:
    instructions = dockerfile()
    assert instructions["USER"] not in ("root", "0")
    assert instructions["STOPSIGNAL"] == "SIGTERM"
    assert instructions["HEALTHCHECK"].split(" CMD ")[1].startswith('["python"')
    assert json.loads(instructions["CMD"])[:2] == ["trioapi", "run"]


def test_the_dockerfile_command_serves_the_chat_is_healthy_and_says_1001_on_its_stop_signal() -> None:
    instructions = dockerfile()
    argv = json.loads(instructions["CMD"])[1:]
    port = free_port()
    # Inside the container it binds 0.0.0.0:8000; here, a free port of 127.0.0.1.
    argv[argv.index("--host") + 1] = "127.0.0.1"
    argv[argv.index("--port") + 1] = str(port)
    check = json.loads(instructions["HEALTHCHECK"].split(" CMD ", 1)[1])
    check = [sys.executable, *(arg.replace(":8000/", f":{port}/") for arg in check[1:])]

    with running_command([*TRIOAPI, *argv], port) as server:
        assert subprocess.run(check, timeout=10).returncode == 0
        with chat_client(port, "ann") as client:
            stop = signal.Signals[instructions["STOPSIGNAL"]]
            assert close_code_after(client, server, stop) == 1001
        assert server.process.wait(timeout=10) == 0  # within docker stop's 10 s
        assert "Traceback" not in server.output
    assert subprocess.run(check, capture_output=True, timeout=10).returncode != 0


def docker_engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except subprocess.TimeoutExpired:
        return False


@pytest.mark.skipif(not docker_engine_answers(), reason="no Docker engine answers `docker info` here")
def test_the_dockerfile_builds() -> None:
    build = ["docker", "build", "--quiet", "-f", str(DOCKERFILE), "-t", "trioapi-chat-test", str(ROOT)]
    assert subprocess.run(build, capture_output=True, timeout=600).returncode == 0


# -- nginx --------------------------------------------------------------------------------

needs_nginx = pytest.mark.skipif(
    shutil.which("nginx") is None, reason="nginx is not installed (.ci/run installs nginx-light)"
)


def nginx_site(tmp_path: Path, upstream: int, http: int, https: int) -> Path:
    """The snippet's site on 127.0.0.1 ports, with a self-signed certificate, in an nginx of its own."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    certificate = "-x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=127.0.0.1"
    openssl = ["openssl", "req", *certificate.split(), "-addext", "subjectAltName=IP:127.0.0.1"]
    subprocess.run(
        [*openssl, "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    site = NGINX.read_text()
    site = replaced(site, "listen 80;", f"listen 127.0.0.1:{http};")
    site = replaced(site, "listen 443 ssl;", f"listen 127.0.0.1:{https} ssl;")
    site = replaced(site, "/etc/letsencrypt/live/chat.example.com/fullchain.pem", str(cert))
    site = replaced(site, "/etc/letsencrypt/live/chat.example.com/privkey.pem", str(key))
    site = replaced(site, "server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream};")
    (tmp_path / "chat.conf").write_text(site)
    # What /etc/nginx/nginx.conf provides around conf.d/, kept inside tmp_path.
    temp_paths = "".join(
        f"{kind}_temp_path {tmp_path}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    user = "user root;" if os.geteuid() == 0 else ""
    main = tmp_path / "nginx.conf"
    main.write_text(
        f"{user} pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log;\n"
        f"events {{}}\nhttp {{ access_log off; {temp_paths}\ninclude {tmp_path}/chat.conf; }}\n"
    )
    return main


@needs_nginx
def test_the_nginx_site_passes_nginx_t(tmp_path: Path) -> None:
    config = nginx_site(tmp_path, free_port(), free_port(), free_port())
    check = subprocess.run(
        ["nginx", "-t", "-p", str(tmp_path), "-c", str(config)], capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 0, check.stderr
    assert "test is successful" in check.stderr
    assert "[warn]" not in check.stderr


@pytest.fixture
def nginx_in_front(tmp_path: Path) -> Iterator[tuple[ServerProcess, int, int]]:
    """The chat behind the snippet's nginx: ``(chat server, http port, https port)``."""
    http, https = free_port(), free_port()
    with running_server("trioapi-hypercorn", "examples.chat:app") as chat:
        config = nginx_site(tmp_path, chat.port, http, https)
        nginx = ["nginx", "-p", str(tmp_path), "-c", str(config), "-g", "daemon off;"]
        with running_command(nginx, https):
            yield chat, http, https


@needs_nginx
def test_the_chat_behind_nginx_is_served_over_https_and_wss(
    nginx_in_front: tuple[ServerProcess, int, int], tmp_path: Path
) -> None:
    chat, http, https = nginx_in_front
    trusted = ssl.create_default_context(cafile=tmp_path / "cert.pem")
    with urllib.request.urlopen(
        f"https://127.0.0.1:{https}/?room=lobby", context=trusted, timeout=10
    ) as page:
        assert b"<title>trioapi chat</title>" in page.read()
    # Plain HTTP is sent to HTTPS, where the page's WebSocket then uses wss://.
    with pytest.raises(urllib.error.HTTPError) as redirect:
        urllib.request.build_opener(NoRedirects).open(f"http://127.0.0.1:{http}/?room=lobby", timeout=10)
    redirect.value.close()
    assert redirect.value.code == 301
    assert redirect.value.headers["Location"] == "https://127.0.0.1/?room=lobby"

    with chat_client(https, "ann", trusted) as ann, chat_client(https, "bob", trusted) as bob:
        ann.send("through nginx")
        said = {"type": "message", "client": "ann", "text": "through nginx"}
        for _ in range(5):  # after Bob's "joined" and presence updates
            if json.loads(bob.recv(timeout=10)) == said:
                break
        else:
            raise AssertionError("Bob never received Ann's message through nginx")
    assert "Traceback" not in chat.output


class NoRedirects(urllib.request.HTTPRedirectHandler):
    """Report a redirect as the error it would otherwise hide."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None
