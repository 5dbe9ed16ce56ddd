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
        "--server",
        choices=SERVERS,
        default="hypercorn",
        help="hypercorn (HTTP and WebSocket routes), native (trioapi's own engine, WebSockets only) "
        "or trio-websocket (WebSockets only) (default hypercorn)",
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
    run.add_argument("--log-level", default="info", help="logging level (default info)")
    run.add_argument("--fd", type=int, default=None, help=argparse.SUPPRESS)  # a worker's inherited socket
    run.add_argument("--ready-fd", type=int, default=None, help=argparse.SUPPRESS)  # a worker says it serves
    return parser


def _config(args: argparse.Namespace) -> ServerConfig:
    return ServerConfig(
        max_message_size=args.max_message_size,
        ping_interval=args.ping_interval or None,
        idle_timeout=args.idle_timeout or None,
        graceful_timeout=args.graceful_timeout,
        handshake_timeout=args.handshake_timeout,
        tune_gc=args.tune_gc,
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
                    task_status=task_status,
                )
                nursery.cancel_scope.cancel()

            nursery.start_soon(stop_on_signals)
            port = await nursery.start(serve_then_stop_listening)
            if args.ready_fd is not None:  # a worker: tell the supervisor it serves
                os.write(args.ready_fd, b"1")
                os.close(args.ready_fd)
            if sock is None:
                scheme = "http" if args.server == "hypercorn" else "ws"
                print(
                    f"trioapi: serving {args.app} on {scheme}://{args.host}:{port} (Ctrl-C to stop)",
                    flush=True,
                )


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

    def __init__(self, argv: list[str], sock: socket.socket) -> None:
        ready, self._ready_w = os.pipe()
        os.set_blocking(ready, False)
        self._ready_r = ready
        self.process = subprocess.Popen(
            [*argv, "--ready-fd", str(self._ready_w)], pass_fds=[sock.fileno(), self._ready_w]
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


def _say(message: str) -> None:
    print(f"trioapi: {message}", file=sys.stderr, flush=True)


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
        self.workers: list[_Worker | None] = [_Worker(argv, sock) for _ in range(count)]
        self._restart_at = [0.0] * count
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
                        self.workers[slot] = _Worker(self._argv, self._sock)
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

    def _replacement_delay(self, worker: _Worker, code: int, now: float) -> float | None:
        """After ``worker`` died: how long before it is replaced, or ``None`` to give up, saying why."""
        pid, status = worker.process.pid, _exit_status(code)
        if not self._started:
            _say(f"worker {pid} failed to start ({status})")
            return None
        self._deaths = [death for death in self._deaths if death > now - CRASH_LOOP_WINDOW] + [now]
        if len(self._deaths) > CRASH_LOOP_EXITS:
            _say(
                f"workers exited {len(self._deaths)} times within {CRASH_LOOP_WINDOW:.0f} s "
                f"(the last, {pid}: {status}): a crash loop; stopping"
            )
            return None
        delay = min(RESTART_DELAY * 2.0 ** (len(self._deaths) - 1), RESTART_DELAY_MAX)
        _say(f"worker {pid} exited unexpectedly ({status}); starting another in {delay:.1f} s")
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
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(1024)
    sock.set_inheritable(True)
    port = sock.getsockname()[1]
    child_argv = [sys.executable, "-m", "trioapi", *argv, "--workers", "1", "--fd", str(sock.fileno())]
    supervisor = _Supervisor(child_argv, sock, args.workers)
    scheme = "http" if args.server == "hypercorn" else "ws"
    print(
        f"trioapi: serving {args.app} on {scheme}://{args.host}:{port} with {args.workers} workers "
        "(Ctrl-C to stop)",
        flush=True,
    )

    def on_signal(signum: int, frame: object) -> None:
        supervisor.stopping = True
        supervisor.stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    asked = supervisor.watch()
    # Asked to stop, a worker that could not start, or a crash loop: stop them all.
    supervisor.stop()
    clean = supervisor.wait(args.graceful_timeout + 5)
    sock.close()
    return 0 if asked and clean else 1


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
