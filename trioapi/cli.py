"""``trioapi run module:app``: serve an app from the command line.

With ``--workers 1`` (the default) the app is served in this process. With more,
this process binds the socket once, starts that many worker processes that
share it, forwards Ctrl-C/SIGTERM to them, and waits for their graceful
shutdown. Every worker, like the single process, closes open WebSockets with
1001 before it exits.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import trio

from trioapi import __version__
from trioapi._errors import single_error
from trioapi.exceptions import LifespanError
from trioapi.server import ServerConfig, ServerKind, serve
from trioapi.server._listen import address, bind_unix, unlink_unix
from trioapi.server._logging import WORKER_ENV, WORKERS_ENV, configure_logging

__all__ = ["load_app", "main"]

logger = logging.getLogger("trioapi")

SERVERS: tuple[ServerKind, ...] = ("hypercorn", "native", "trio-websocket")


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
        app = getattr(module, attribute)
    except AttributeError:
        raise SystemExit(f"trioapi: module {module_name!r} has no attribute {attribute!r}") from None
    if not _is_asgi_app(app):
        raise SystemExit(
            f"trioapi: {target} is not an ASGI app: it is {type(app).__name__} {app!r:.60}; "
            "point at your TrioAPI() object, as in module:app"
        )
    return app


def _is_asgi_app(app: Any) -> bool:
    """An ``async def app(scope, receive, send)``, or an object whose ``__call__`` is one."""
    if inspect.isfunction(app) or inspect.ismethod(app):
        return inspect.iscoroutinefunction(app)
    return callable(app) and inspect.iscoroutinefunction(type(app).__call__)


def _version() -> str:
    from importlib.metadata import version

    parts = ", ".join(f"{name} {version(name)}" for name in ("trio", "hypercorn", "trio-websocket"))
    return f"trioapi {__version__} ({parts}; Python {sys.version.split()[0]})"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trioapi",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run",
        help="serve an app",
        description="Serve an app (module:attribute) until Ctrl-C or SIGTERM; open WebSockets get 1001.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("app", help="the app to serve, as module:attribute (the current folder is importable)")
    run.add_argument("--version", action="version", version=_version())
    where = run.add_argument_group("where")
    where.add_argument("--host", default="127.0.0.1", help="the interface to listen on (default: 127.0.0.1)")
    where.add_argument(
        "--port", type=int, default=8000, help="the port to listen on; 0 picks a free one (default: 8000)"
    )
    where.add_argument(
        "--uds",
        metavar="PATH",
        default=None,
        help="listen on this Unix socket instead of --host/--port, as a proxy's upstream on the same "
        "machine; removed on exit (default: none)",
    )
    where.add_argument(
        "--root-path",
        default="",
        help="the path prefix a proxy strips before passing requests on, so URLs the app builds "
        "include it (default: none)",
    )
    defaults = ServerConfig()
    proxy = run.add_argument_group("behind a proxy")
    proxy.add_argument(
        "--proxy-headers",
        action="store_true",
        help="take the client's address and scheme from Forwarded or X-Forwarded-For/-Proto "
        "headers, from the peers of --forwarded-allow-ips only (default: off)",
    )
    proxy.add_argument(
        "--forwarded-allow-ips",
        metavar="IPS",
        default=os.environ.get("FORWARDED_ALLOW_IPS", defaults.forwarded_allow_ips),
        help="comma-separated addresses or networks whose proxy headers are believed, or * for "
        "every peer (default: $FORWARDED_ALLOW_IPS, else 127.0.0.1,::1)",
    )
    tls = run.add_argument_group("TLS")
    tls.add_argument(
        "--certfile",
        metavar="FILE",
        default=None,
        help="serve wss:// (and https://) with this PEM certificate chain (default: none, plain)",
    )
    tls.add_argument(
        "--keyfile",
        metavar="FILE",
        default=None,
        help="the certificate's private key, a PEM file (default: read from --certfile)",
    )
    how = run.add_argument_group("how")
    how.add_argument(
        "--server",
        choices=SERVERS,
        default="hypercorn",
        help="hypercorn serves HTTP and WebSocket routes; native (trioapi's own engine, the fastest) "
        "and trio-websocket serve WebSocket routes only (default: hypercorn)",
    )
    how.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes sharing the socket; one that dies is restarted (default: 1)",
    )
    how.add_argument(
        "--reload",
        action="store_true",
        help="restart the server when a Python file changes, for development; open WebSockets get "
        "1001 at each restart (default: off)",
    )
    how.add_argument(
        "--reload-dir",
        action="append",
        metavar="DIR",
        help="a folder --reload watches; repeat for more (default: the current folder)",
    )
    limits = run.add_argument_group("limits")
    limits.add_argument(
        "--ping-interval",
        type=float,
        default=defaults.ping_interval,
        help="seconds between keepalive pings; 0 turns them off (default: 20)",
    )
    limits.add_argument(
        "--idle-timeout",
        type=float,
        default=defaults.idle_timeout,
        help="with pings on, drop a peer silent for this many seconds; 0 turns it off (default: 60)",
    )
    limits.add_argument(
        "--max-message-size",
        type=int,
        default=defaults.max_message_size,
        help="close with 1009 when a message is longer than this many bytes (default: 1048576, 1 MiB)",
    )
    limits.add_argument(
        "--graceful-timeout",
        type=float,
        default=defaults.graceful_timeout,
        help="seconds handlers get after their 1001 on shutdown before they are cancelled (default: 5)",
    )
    limits.add_argument(
        "--handshake-timeout",
        type=float,
        default=defaults.handshake_timeout,
        help="seconds a client gets to complete its handshake (default: 10)",
    )
    limits.add_argument(
        "--no-compression",
        dest="compression",
        action="store_false",
        help="the native server refuses permessage-deflate (default: agreed when a client offers it)",
    )
    limits.add_argument(
        "--no-tune-gc",
        dest="tune_gc",
        action="store_false",
        help="leave the garbage collector's settings alone (default: tuned for a server)",
    )
    logs = run.add_argument_group("logs")
    logs.add_argument(
        "--log-level",
        default="info",
        choices=("critical", "error", "warning", "info", "debug"),
        help="the level of trioapi's and hypercorn's lines (default: info)",
    )
    logs.add_argument(
        "--log-format",
        default="text",
        choices=("text", "json"),
        help="text for people, json for log shippers: one object per line (default: text)",
    )
    logs.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a line per WebSocket accepted, closed or refused, and per HTTP request (default: on)",
    )
    logs.add_argument(
        "--log-config",
        metavar="FILE",
        default=None,
        help="a logging.config dictionary (JSON, or YAML with PyYAML) that replaces the options "
        "above (default: none)",
    )
    run.add_argument("--fd", type=int, default=None, help=argparse.SUPPRESS)  # a worker's inherited socket
    run.add_argument("--ready-fd", type=int, default=None, help=argparse.SUPPRESS)  # a worker says it serves
    _add_asyncapi_parser(commands)
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
        root_path=args.root_path,
        proxy_headers=args.proxy_headers,
        forwarded_allow_ips=args.forwarded_allow_ips,
        certfile=args.certfile,
        keyfile=args.keyfile,
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
                    server=args.server,
                    config=_config(args),
                    shutdown_trigger=stop.wait,
                    sock=sock,
                    uds=args.uds if sock is None else None,
                    task_status=task_status,
                )
                nursery.cancel_scope.cancel()

            nursery.start_soon(stop_on_signals)
            port = await nursery.start(serve_then_stop_listening)
            if args.ready_fd is not None:  # a worker: tell the supervisor it serves
                os.write(args.ready_fd, b"1")
                os.close(args.ready_fd)
            if sock is None:  # a worker of --workers: the supervisor said it already
                logger.info("%s", _banner(args, port))


def _banner(args: argparse.Namespace, port: int) -> str:
    """The one line that says where the app is served."""
    scheme = "http" if args.server == "hypercorn" else "ws"
    if args.certfile is not None:
        scheme += "s"
    host = f"[{args.host}]" if ":" in args.host else args.host
    where = f"{scheme}://{host}:{port}" if args.uds is None else f"{scheme}+unix:{args.uds}"
    workers = f", {args.workers} workers" if args.workers > 1 else ""
    return f"serving {args.app} on {where} ({args.server}{workers}; Ctrl-C to stop)"


#: Seconds before a worker that died is replaced; doubled for each death within
#: ``CRASH_LOOP_WINDOW``, up to ``RESTART_DELAY_MAX``.
RESTART_DELAY = 0.5
RESTART_DELAY_MAX = 8.0
#: More unexpected worker exits than this within ``CRASH_LOOP_WINDOW`` seconds is a crash
#: loop: the supervisor stops every worker and exits 1 instead of restarting.
CRASH_LOOP_EXITS = 5
CRASH_LOOP_WINDOW = 60.0


class _Worker:
    """One worker process of the supervisor, and the pipe on which it says it is serving."""

    def __init__(self, argv: list[str], sock: socket.socket, number: int, count: int) -> None:
        ready, self._ready_w = os.pipe()
        os.set_blocking(ready, False)
        self._ready_r = ready
        self.process = subprocess.Popen(
            [*argv, "--ready-fd", str(self._ready_w)],
            pass_fds=[sock.fileno(), self._ready_w],
            env={**os.environ, WORKER_ENV: str(number), WORKERS_ENV: str(count)},
        )
        os.close(self._ready_w)
        #: Whether it has said it is serving.
        self.ready = False

    def poll(self) -> int | None:
        """Its exit code once it has exited, else ``None``; notes when it has said it is serving."""
        if not self.ready and self._ready_r >= 0:
            with contextlib.suppress(BlockingIOError):
                self.ready = os.read(self._ready_r, 1) == b"1"
        code = self.process.poll()
        if code is not None and self._ready_r >= 0:
            os.close(self._ready_r)
            self._ready_r = -1
        return code


def _exit_status(code: int) -> str:
    return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"


class _Supervisor:
    """Worker processes on one shared socket: started, replaced when they die, stopped together.

    A worker that dies unexpectedly is replaced, after a delay that doubles with
    each recent death; more than ``CRASH_LOOP_EXITS`` deaths within
    ``CRASH_LOOP_WINDOW`` seconds is a crash loop, which stops them all. So
    does a worker that fails to start before any has started (a broken app, a
    lifespan that cannot start): trying again would fail the same way.
    """

    def __init__(self, argv: list[str], sock: socket.socket, count: int) -> None:
        self._argv = argv
        self._sock = sock
        self._restart_at = [0.0] * count
        self.workers: list[_Worker | None] = [self._start(slot) for slot in range(count)]
        self._deaths: list[float] = []  # when workers died unexpectedly, within the window
        self._started = False  # whether any worker has ever said it is serving
        self._told: set[int] = set()
        #: Set by a signal: stop every worker, and do not replace them.
        self.stopping = False

    def watch(self) -> bool:
        """Look after the workers until asked to stop (``True``) or giving up (``False``)."""
        while not self.stopping:
            now = time.monotonic()
            # Every worker's news first: one that died as another became ready is a death
            # after a start, not a failure to start.
            codes = [worker.poll() if worker is not None else None for worker in self.workers]
            self._started = self._started or any(
                worker is not None and worker.ready for worker in self.workers
            )
            for slot, (worker, code) in enumerate(zip(self.workers, codes, strict=True)):
                if worker is None:
                    if now >= self._restart_at[slot]:
                        self.workers[slot] = self._start(slot)
                    continue
                if code is None or self.stopping:
                    continue
                self.workers[slot] = None
                delay = self._replacement_delay(worker, code, now)
                if delay is None:
                    return False
                self._restart_at[slot] = now + delay
            time.sleep(0.1)
        return True

    def _start(self, slot: int) -> _Worker:
        """A worker for ``slot``: its number (``TRIOAPI_WORKER``) is the slot's, a replacement's too."""
        return _Worker(self._argv, self._sock, slot + 1, len(self._restart_at))

    def _replacement_delay(self, worker: _Worker, code: int, now: float) -> float | None:
        """After ``worker`` died: how long before it is replaced, or ``None`` to give up, saying why."""
        pid, status = worker.process.pid, _exit_status(code)
        if not self._started:
            logger.error("worker %s failed to start (%s)", pid, status)
            return None
        self._deaths = [death for death in self._deaths if death > now - CRASH_LOOP_WINDOW] + [now]
        if len(self._deaths) > CRASH_LOOP_EXITS:
            logger.error(
                "workers exited %d times within %.0f s (the last, %s: %s): a crash loop; stopping",
                len(self._deaths),
                CRASH_LOOP_WINDOW,
                pid,
                status,
            )
            return None
        delay = min(RESTART_DELAY * 2.0 ** (len(self._deaths) - 1), RESTART_DELAY_MAX)
        logger.warning("worker %s exited unexpectedly (%s); starting another in %.1f s", pid, status, delay)
        return delay

    def stop(self) -> None:
        """SIGTERM to every worker still running, once each: a second would cut its goodbye short."""
        for worker in self.workers:
            if worker is not None and worker.process.pid not in self._told and worker.process.poll() is None:
                self._told.add(worker.process.pid)
                worker.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> bool:
        """Wait for every worker to exit (killing those left after ``timeout``); whether all did cleanly.

        Cleanly: exit code 0, or ended by our SIGTERM before they could handle it (still starting).
        """
        deadline = time.monotonic() + timeout
        clean = True
        for worker in self.workers:
            if worker is None:
                continue
            try:
                worker.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
            worker.poll()  # closes its pipe
            clean = clean and worker.process.returncode in (0, -signal.SIGTERM)
        return clean


def _supervise(args: argparse.Namespace, argv: Sequence[str]) -> int:
    with _listening_socket(args) as sock:
        return _supervise_on(sock, args, argv)


def _supervise_on(sock: socket.socket, args: argparse.Namespace, argv: Sequence[str]) -> int:
    port = _port(sock)
    child_argv = [sys.executable, "-m", "trioapi", *argv, "--workers", "1", "--fd", str(sock.fileno())]
    supervisor = _Supervisor(child_argv, sock, args.workers)
    logger.info("%s", _banner(args, port))

    def on_signal(signum: int, frame: object) -> None:
        supervisor.stopping = True
        supervisor.stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    asked = supervisor.watch()
    # Asked to stop, a worker that could not start, or a crash loop: stop them all.
    supervisor.stop()
    clean = supervisor.wait(args.graceful_timeout + 5)
    return 0 if asked and clean else 1


@contextlib.contextmanager
def _listening_socket(args: argparse.Namespace) -> Iterator[socket.socket]:
    """The socket a supervisor binds once and its child processes share (inherited by number).

    A Unix socket's file is removed when the block ends.
    """
    if args.uds is not None:
        sock = bind_unix(args.uds)
        sock.set_inheritable(True)
        try:
            yield sock
        finally:
            unlink_unix(sock, args.uds)
        return
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host, args.port))
        sock.listen(1024)
        sock.set_inheritable(True)
        yield sock


def _address(args: argparse.Namespace) -> str:
    """Where ``args`` asks to listen, for error messages."""
    return args.uds if args.uds is not None else f"{args.host}:{args.port}"


def _port(sock: socket.socket) -> int:
    """The port ``sock`` listens on; 0 for a Unix socket."""
    bound = address(sock.getsockname())
    return 0 if bound is None else bound[1]


def _reload(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """``--reload``: serve from a child process, and replace it whenever a Python file changes.

    The socket is bound here, once, so the port stays open across restarts and
    clients that reconnect find the new code. Each restart stops the child as a
    SIGTERM would (open WebSockets get 1001, teardown runs); a child that fails
    to start (a syntax error in the file just saved) is started again at the next change.
    """
    try:
        from watchfiles import PythonFilter, watch
    except ImportError:
        raise SystemExit('trioapi: --reload needs watchfiles: pip install "trioapi[reload]"') from None
    with _listening_socket(args) as sock:
        port = _port(sock)
        child_argv = [
            sys.executable,
            "-m",
            "trioapi",
            *(a for a in argv if a != "--reload"),
            "--fd",
            str(sock.fileno()),
        ]
        directories = [os.path.abspath(path) for path in (args.reload_dir or [os.getcwd()])]
        stop = threading.Event()

        def on_signal(signum: int, frame: object) -> None:
            stop.set()

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        logger.info("%s", _banner(args, port))
        logger.info("watching %s for changes to Python files", ", ".join(directories))

        def start() -> subprocess.Popen[bytes]:
            return subprocess.Popen(child_argv, pass_fds=[sock.fileno()])

        def stop_child(child: subprocess.Popen[bytes]) -> None:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
                try:
                    child.wait(timeout=args.graceful_timeout + 5)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()

        child = start()
        try:
            for changes in watch(
                *directories, watch_filter=PythonFilter(), stop_event=stop, rust_timeout=500
            ):
                changed = sorted({os.path.relpath(path) for _, path in changes})
                logger.info(
                    "%s changed: restarting", ", ".join(changed[:3]) + (" ..." if len(changed) > 3 else "")
                )
                stop_child(child)
                child = start()
        finally:
            stop_child(child)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The ``trioapi`` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    if args.command == "asyncapi":
        return _write_asyncapi(args)
    if args.workers < 1:
        raise SystemExit("trioapi: --workers must be at least 1")
    configure_logging(
        args.log_level, args.log_format, access_log=args.access_log, config_file=args.log_config
    )
    try:
        # Mistakes in these show now, as one line, before any banner or worker.
        _config(args).ssl_context()
    except ValueError as exc:
        raise SystemExit(f"trioapi: {exc}") from None
    except OSError as exc:  # ssl.SSLError too
        raise SystemExit(f"trioapi: cannot load the TLS certificate {args.certfile}: {exc}") from None
    if args.reload:
        if args.workers > 1:
            raise SystemExit("trioapi: --reload serves from one process; drop --workers")
        try:
            return _reload(args, argv)
        except OSError as exc:
            raise SystemExit(f"trioapi: cannot serve on {_address(args)}: {exc}") from None
    if args.workers > 1:
        try:
            return _supervise(args, [a for a in argv])
        except OSError as exc:
            raise SystemExit(f"trioapi: cannot serve on {_address(args)}: {exc}") from None
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
        print(f"trioapi: cannot serve on {_address(args)}: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


# -- trioapi asyncapi module:app [-o file] ------------------------------------------


def _add_asyncapi_parser(commands: Any) -> None:
    asyncapi = commands.add_parser("asyncapi", help="print the app's AsyncAPI document (JSON)")
    asyncapi.add_argument("app", help="the app, as module:attribute")
    asyncapi.add_argument("-o", "--output", default=None, help="write to this file instead of stdout")


def _write_asyncapi(args: argparse.Namespace) -> int:
    """Print (or write) ``app.asyncapi()``: for docs pipelines, and apps served by the native server."""
    import json

    app = load_app(args.app)
    if not callable(getattr(app, "asyncapi", None)):
        raise SystemExit(f"trioapi: {args.app} is not a TrioAPI app (it has no asyncapi())")
    text = json.dumps(app.asyncapi(), indent=2, ensure_ascii=False) + "\n"
    if args.output is None:
        sys.stdout.write(text)
    else:
        with open(args.output, "w", encoding="utf-8") as file:
            file.write(text)
    return 0
