"""TLS, proxy headers, ``root_path`` and Unix sockets, the same on every server.

Each test serves a small app with ``trioapi.serve`` in-process and talks to it
with a third-party client (``websockets``) the way a browser or proxy would:
over ``wss://`` with a certificate from a test CA, through a "proxy" that sends
``X-Forwarded-*`` headers, under a path prefix, and over a Unix socket.
"""

from __future__ import annotations

import json
import socket
import ssl
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme
from apps.where_app import app
from servers import command, free_port, running_command
from websockets.exceptions import InvalidMessage
from websockets.sync.client import ClientConnection, connect, unix_connect

import trioapi
from trioapi.server import ServerConfig, ServerKind

SERVERS: list[ServerKind] = ["hypercorn", "native", "trio-websocket"]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def certificate(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A server certificate for 127.0.0.1 and ::1: (chain, key) as PEM files."""
    cert = ca.issue_cert("127.0.0.1", "::1", "localhost")
    folder = tmp_path_factory.mktemp("tls")
    chain, key = folder / "chain.pem", folder / "key.pem"
    cert.cert_chain_pems[0].write_to_path(chain)
    for pem in cert.cert_chain_pems[1:]:
        pem.write_to_path(chain, append=True)
    cert.private_key_pem.write_to_path(key)
    return chain, key


@pytest.fixture(scope="module")
def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@asynccontextmanager
async def serving(server: ServerKind, config: ServerConfig, **where: Any) -> AsyncIterator[int]:
    """``app`` served by ``server`` in this test's nursery; the port bound (0 on a Unix socket)."""
    async with trio.open_nursery() as nursery:
        port = await nursery.start(partial(trioapi.serve, app, port=0, server=server, config=config, **where))
        yield port
        nursery.cancel_scope.cancel()


def hello(client: ClientConnection) -> dict[str, Any]:
    """The app's first message, decoded; then one echo, to show the connection is a working one."""
    first: dict[str, Any] = json.loads(client.recv(timeout=10))
    client.send("ping")
    assert client.recv(timeout=10) == "ping"
    return first


async def in_thread(function: Any, *args: Any) -> Any:
    """Run a blocking client in a thread, so the server in this thread's Trio run goes on serving."""
    with trio.fail_after(20):
        return await trio.to_thread.run_sync(partial(function, *args))


# -- TLS ---------------------------------------------------------------------------------


@pytest.mark.parametrize("server", SERVERS)
async def test_wss_with_a_certificate_the_client_trusts(
    server: ServerKind, certificate: tuple[Path, Path], client_context: ssl.SSLContext
) -> None:
    chain, key = certificate
    config = ServerConfig(certfile=str(chain), keyfile=str(key))

    def talk(port: int) -> dict[str, Any]:
        with connect(f"wss://127.0.0.1:{port}/where", ssl=client_context, open_timeout=10) as client:
            return hello(client)

    async with serving(server, config) as port:
        seen = await in_thread(talk, port)
        again = await in_thread(talk, port)  # and the server goes on after the first has left
    assert seen["scheme"] == again["scheme"] == "wss"
    assert seen["url"] == f"wss://127.0.0.1:{port}/where"


@pytest.mark.parametrize("server", SERVERS)
async def test_a_plain_client_or_an_untrusting_one_fails_alone(
    server: ServerKind, certificate: tuple[Path, Path], client_context: ssl.SSLContext
) -> None:
    chain, key = certificate
    config = ServerConfig(certfile=str(chain), keyfile=str(key), handshake_timeout=2)

    def plain(port: int) -> type[BaseException]:
        with pytest.raises((InvalidMessage, EOFError, OSError, TimeoutError)) as info:
            with connect(f"ws://127.0.0.1:{port}/where", open_timeout=10):
                pass
        return info.type

    def untrusting(port: int) -> None:
        with pytest.raises(ssl.SSLCertVerificationError):
            with connect(f"wss://127.0.0.1:{port}/where", ssl=ssl.create_default_context(), open_timeout=10):
                pass

    def trusting(port: int) -> dict[str, Any]:
        with connect(f"wss://127.0.0.1:{port}/where", ssl=client_context, open_timeout=10) as client:
            return hello(client)

    async with serving(server, config) as port:
        await in_thread(plain, port)
        await in_thread(untrusting, port)
        # A client that sends nothing at all holds no more than its handshake_timeout.
        with trio.socket.socket() as silent:
            await silent.connect(("127.0.0.1", port))
            assert (await in_thread(trusting, port))["scheme"] == "wss"
            with trio.fail_after(10):
                assert await silent.recv(1) == b""


def test_a_missing_certificate_is_said_before_serving(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        ServerConfig(certfile=str(tmp_path / "missing.pem")).ssl_context()


# -- behind a proxy ------------------------------------------------------------------------


FORWARDED = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize(
    ("allowed", "expected"),
    [("127.0.0.1,::1", ("203.0.113.7", "wss")), ("10.0.0.0/8", ("127.0.0.1", "ws"))],
    ids=["from-a-trusted-proxy", "from-another-peer"],
)
async def test_proxy_headers_are_believed_only_from_a_trusted_peer(
    server: ServerKind, allowed: str, expected: tuple[str, str]
) -> None:
    config = ServerConfig(proxy_headers=True, forwarded_allow_ips=allowed)

    def talk(port: int) -> dict[str, Any]:
        with connect(f"ws://127.0.0.1:{port}/where", additional_headers=FORWARDED, open_timeout=10) as client:
            return hello(client)

    async with serving(server, config) as port:
        seen = await in_thread(talk, port)
    assert (seen["client"][0], seen["scheme"]) == expected


@pytest.mark.parametrize("server", SERVERS)
async def test_without_proxy_headers_the_peer_is_the_client(server: ServerKind) -> None:
    def talk(port: int) -> dict[str, Any]:
        with connect(f"ws://127.0.0.1:{port}/where", additional_headers=FORWARDED, open_timeout=10) as client:
            return hello(client)

    async with serving(server, ServerConfig()) as port:
        seen = await in_thread(talk, port)
    assert (seen["client"][0], seen["scheme"]) == ("127.0.0.1", "ws")


# -- under a path prefix -------------------------------------------------------------------


@pytest.mark.parametrize("server", SERVERS)
async def test_root_path_makes_the_public_url(server: ServerKind) -> None:
    # The proxy strips /chat and passes /where on; the app still knows its public URL.
    def talk(port: int) -> dict[str, Any]:
        with connect(f"ws://127.0.0.1:{port}/where", open_timeout=10) as client:
            return hello(client)

    async with serving(server, ServerConfig(root_path="/chat")) as port:
        seen = await in_thread(talk, port)
    assert seen["root_path"] == "/chat"
    assert seen["url"] == f"ws://127.0.0.1:{port}/chat/where"


# -- over a Unix socket ----------------------------------------------------------------------


@pytest.fixture
def socket_path() -> Iterator[Path]:
    # AF_UNIX paths are short (108 bytes): tmp_path can be longer than that.
    folder = Path(tempfile.mkdtemp(prefix="trioapi-"))
    yield folder / "trioapi.sock"
    (folder / "trioapi.sock").unlink(missing_ok=True)
    folder.rmdir()


@pytest.mark.parametrize("server", SERVERS)
async def test_a_unix_socket(server: ServerKind, socket_path: Path) -> None:
    async with serving(server, ServerConfig(), uds=str(socket_path)):
        assert await trio.Path(socket_path).is_socket()
        seen = await in_thread(unix_hello, socket_path)
    assert seen["client"] is None
    assert seen["url"] == "ws://localhost/where"
    assert not await trio.Path(socket_path).exists()  # removed once the server has stopped


def unix_hello(path: Path) -> dict[str, Any]:
    with unix_connect(str(path), "ws://localhost/where", open_timeout=10) as client:
        return hello(client)


async def test_a_unix_socket_a_live_server_holds_is_not_taken(socket_path: Path) -> None:
    async with serving("native", ServerConfig(), uds=str(socket_path)):
        with pytest.RaisesGroup(pytest.RaisesExc(OSError, match="already listens")):
            async with serving("native", ServerConfig(), uds=str(socket_path)):
                pass
        seen = await in_thread(unix_hello, socket_path)
    assert seen["client"] is None


async def test_a_dead_servers_unix_socket_is_replaced(socket_path: Path) -> None:
    leftover = socket.socket(socket.AF_UNIX)
    leftover.bind(str(socket_path))
    leftover.close()  # bound, never listened on: what a killed server leaves
    async with serving("native", ServerConfig(), uds=str(socket_path)):
        seen = await in_thread(unix_hello, socket_path)
    assert seen["client"] is None


# -- the same options on trioapi run -------------------------------------------------------


@pytest.mark.parametrize("server", SERVERS)
def test_trioapi_run_serves_wss_behind_a_proxy_under_a_prefix(
    server: ServerKind, certificate: tuple[Path, Path], client_context: ssl.SSLContext
) -> None:
    chain, key = certificate
    port = free_port()
    options = ["--certfile", str(chain), "--keyfile", str(key), "--root-path", "/chat"]
    options += ["--proxy-headers", "--forwarded-allow-ips", "127.0.0.1"]
    with running_command(cli(server, port, *options), port) as process:
        url = f"wss://127.0.0.1:{port}/where"
        with connect(url, ssl=client_context, additional_headers=FORWARDED, open_timeout=10) as client:
            seen = hello(client)
        assert process.terminate() == 0
        output = process.output
    assert (seen["client"][0], seen["scheme"], seen["root_path"]) == ("203.0.113.7", "wss", "/chat")
    assert seen["url"] == f"wss://127.0.0.1:{port}/chat/where"
    scheme = "https" if server == "hypercorn" else "wss"
    assert f"serving tests.apps.where_app:app on {scheme}://127.0.0.1:{port} " in output


@pytest.mark.parametrize("server", SERVERS)
def test_trioapi_run_workers_share_a_unix_socket_removed_on_exit(
    server: ServerKind, socket_path: Path
) -> None:
    argv = cli(server, 0, "--uds", str(socket_path), "--workers", "2")
    with running_command(argv, 0, uds=str(socket_path)) as process:
        seen = [unix_hello(socket_path) for _ in range(2)]
        assert process.terminate() == 0
        output = process.output
    assert [each["client"] for each in seen] == [None, None]
    scheme = "http" if server == "hypercorn" else "ws"
    assert f"serving tests.apps.where_app:app on {scheme}+unix:{socket_path} " in output
    assert not socket_path.exists()
    assert "Traceback" not in output


def cli(server: ServerKind, port: int, *options: str) -> list[str]:
    """``trioapi run`` serving ``tests.apps.where_app:app`` with ``server`` on ``port``."""
    kind = "trioapi-hypercorn" if server == "hypercorn" else server  # "hypercorn" there is its own CLI
    return command(kind, "tests.apps.where_app:app", port, *options)
