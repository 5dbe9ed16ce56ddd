"""``trioapi run module:app``: serve an app from the command line.

With ``--workers 1`` (the default) the app is served in this process. With more,
this process binds the socket once, starts that many worker processes that
share it, forwards Ctrl-C/SIGTERM to them, and waits for their graceful
shutdown. Every worker, like the single process, closes open WebSockets with
1001 before it exits.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import trio

from trioapi._errors import single_error
from trioapi.exceptions import LifespanError
from trioapi.server import ServerConfig, ServerKind, serve

__all__ = ["load_app", "main"]

SERVERS: dict[str, ServerKind] = {"hypercorn": "hypercorn", "trio-websocket": "native", "native": "native"}


def load_app(target: str) -> Any:
    """Import ``module:attribute`` (the current directory is importable, as for hypercorn)."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise SystemExit(f"trioapi: expected 'module:app', got {target!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SystemExit(f"trioapi: cannot import {module_name!r}: {exc}") from exc
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise SystemExit(f"trioapi: module {module_name!r} has no attribute {attribute!r}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trioapi", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="serve an app")
    run.add_argument("app", help="the app to serve, as module:attribute")
    run.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    run.add_argument("--port", type=int, default=8000, help="port to bind; 0 picks a free one (default 8000)")
    run.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    run.add_argument(
        "--server", choices=sorted(SERVERS), default="hypercorn", help="server (default hypercorn)"
    )
    defaults = ServerConfig()
    run.add_argument(
        "--ping-interval", type=float, default=defaults.ping_interval, help="keepalive ping seconds"
    )
    run.add_argument(
        "--idle-timeout", type=float, default=defaults.idle_timeout, help="drop silent peers after"
    )
    run.add_argument(
        "--max-message-size", type=int, default=defaults.max_message_size, help="close 1009 above"
    )
    run.add_argument(
        "--graceful-timeout", type=float, default=defaults.graceful_timeout, help="shutdown grace"
    )
    run.add_argument(
        "--handshake-timeout", type=float, default=defaults.handshake_timeout, help="handshake deadline"
    )
    run.add_argument(
        "--no-tune-gc",
        dest="tune_gc",
        action="store_false",
        help="leave the garbage collector's settings alone",
    )
    run.add_argument(
        "--no-compression",
        dest="compression",
        action="store_false",
        help="native server: refuse permessage-deflate",
    )
    run.add_argument("--log-level", default="info", help="logging level (default info)")
    run.add_argument("--fd", type=int, default=None, help=argparse.SUPPRESS)  # a worker's inherited socket
    return parser


def _config(args: argparse.Namespace) -> ServerConfig:
    return ServerConfig(
        max_message_size=args.max_message_size,
        ping_interval=args.ping_interval or None,
        idle_timeout=args.idle_timeout or None,
        graceful_timeout=args.graceful_timeout,
        handshake_timeout=args.handshake_timeout,
        tune_gc=args.tune_gc,
        compression=args.compression,
    )


async def _serve_until_signal(app: Any, args: argparse.Namespace, sock: socket.socket | None) -> None:
    try:
        await _serve_and_announce(app, args, sock)
    except BaseExceptionGroup as group:
        raise single_error(group) from None


async def _serve_and_announce(app: Any, args: argparse.Namespace, sock: socket.socket | None) -> None:
    stop = trio.Event()
    # The receiver stays open for the whole graceful shutdown: a second SIGTERM
    # (systemd signalling the whole group while the supervisor forwards its own)
    # must not fall through to the default action and kill the process mid-goodbye.
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def stop_on_signals() -> None:
                async for _ in signals:
                    stop.set()

            async def serve_then_stop_listening(task_status: trio.TaskStatus[int]) -> None:
                await serve(
                    app,
                    host=args.host,
                    port=args.port,
                    server=SERVERS[args.server],
                    config=_config(args),
                    shutdown_trigger=stop.wait,
                    sock=sock,
                    task_status=task_status,
                )
                nursery.cancel_scope.cancel()

            nursery.start_soon(stop_on_signals)
            port = await nursery.start(serve_then_stop_listening)
            if sock is None:
                scheme = "ws" if SERVERS[args.server] == "native" else "http"
                print(
                    f"trioapi: serving {args.app} on {scheme}://{args.host}:{port} (Ctrl-C to stop)",
                    flush=True,
                )


def _supervise(args: argparse.Namespace, argv: Sequence[str]) -> int:
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(1024)
    sock.set_inheritable(True)
    port = sock.getsockname()[1]
    child_argv = [sys.executable, "-m", "trioapi", *argv, "--workers", "1", "--fd", str(sock.fileno())]
    workers = [subprocess.Popen(child_argv, pass_fds=[sock.fileno()]) for _ in range(args.workers)]
    scheme = "ws" if SERVERS[args.server] == "native" else "http"
    print(
        f"trioapi: serving {args.app} on {scheme}://{args.host}:{port} with {args.workers} workers "
        "(Ctrl-C to stop)",
        flush=True,
    )
    signalled = False
    told: set[int] = set()

    def stop_workers() -> None:
        # Once per worker: a second SIGTERM would cut its graceful shutdown short.
        for worker in workers:
            if worker.pid not in told and worker.poll() is None:
                told.add(worker.pid)
                worker.send_signal(signal.SIGTERM)

    def on_signal(signum: int, frame: object) -> None:
        nonlocal signalled
        signalled = True
        stop_workers()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    while not signalled and all(worker.poll() is None for worker in workers):
        time.sleep(0.2)
    # Asked to stop, or a worker ended by itself (a failed startup, a crash): stop them all.
    stop_workers()
    deadline = time.monotonic() + args.graceful_timeout + 5
    for worker in workers:
        try:
            worker.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    sock.close()
    # Success only for a shutdown we were asked for, every worker exiting cleanly (or
    # ended by our SIGTERM before it could install its handler, while still starting).
    clean = (0, -signal.SIGTERM)
    return 0 if signalled and all(worker.returncode in clean for worker in workers) else 1


def main(argv: Sequence[str] | None = None) -> int:
    """The ``trioapi`` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    # trioapi's own loggers only: hypercorn has its handlers already, and a root
    # handler would print each of its lines twice.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    trioapi_logger = logging.getLogger("trioapi")
    trioapi_logger.addHandler(handler)
    trioapi_logger.setLevel(args.log_level.upper())
    if args.workers < 1:
        raise SystemExit("trioapi: --workers must be at least 1")
    if args.workers > 1:
        return _supervise(args, [a for a in argv])
    app = load_app(args.app)
    sock = None if args.fd is None else socket.socket(fileno=args.fd)
    try:
        trio.run(_serve_until_signal, app, args, sock)
    except KeyboardInterrupt:
        pass
    except LifespanError as exc:
        print(f"trioapi: {args.app} could not start: {exc}", file=sys.stderr, flush=True)
        return 1
    except OSError as exc:
        print(f"trioapi: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0
