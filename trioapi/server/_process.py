"""Process policy: what trioapi does to a process it serves from (the garbage collector, SIGTERM).

Policy for a process belongs to whoever runs it. ``trioapi run`` owns its
processes: it tunes the collector (``--no-tune-gc`` to opt out) and handles
SIGTERM itself. ``trioapi.serve()`` embedded in a program of yours tunes only
when ``ServerConfig(tune_gc=True)`` says so, and leaves SIGTERM to you.

hypercorn's own command line (``hypercorn --worker-class trio module:app``) starts
``multiprocessing`` workers and configures neither: a worker keeps CPython's
collector settings and dies of SIGTERM outright, so a SIGTERM to the whole
process group (``kill -TERM -PGID``, systemd's default ``KillMode``) left every
open WebSocket with 1006. An app whose lifespan starts in such a worker
therefore *adopts* it (``adopt_worker_process``): it tunes the collector and, on
SIGTERM, closes every WebSocket with 1001 before leaving the worker to
hypercorn. Set ``TRIOAPI_ADOPT_WORKERS=0`` in the environment to leave hypercorn's
workers exactly as hypercorn made them.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Awaitable, Callable

import trio

__all__ = [
    "ADOPT_WORKERS_ENV",
    "COLLECT_EVERY",
    "YOUNG_THRESHOLD",
    "adopt_worker_process",
    "connection_closed",
    "goodbye_on_sigterm",
    "sigterm_left_to_default",
    "tune_gc",
]

logger = logging.getLogger("trioapi")

#: The environment variable that, set to ``0``, keeps apps from adopting hypercorn's workers.
ADOPT_WORKERS_ENV = "TRIOAPI_ADOPT_WORKERS"

#: Allocations (net of frees) between young collections; CPython's default is 700.
#: A fan-out to a thousand connections keeps some 20,000 objects alive at once for
#: a moment (each sender's suspended send), which a low threshold would scan and
#: promote on every message; objects that die by reference counting never count.
YOUNG_THRESHOLD = 50_000

#: Closed connections between two young collections once the collector is tuned.
#: What a connection leaves for the collector (reference cycles: hypercorn leaves
#: some 30 objects per connection) does count towards ``YOUNG_THRESHOLD``, and
#: under connection churn it would pile up for some 1,600 connections and go in one
#: pause of tens of milliseconds; collected every ``COLLECT_EVERY`` closes, it goes
#: in pauses small enough to stay out of the tail.
COLLECT_EVERY = 100

#: After its goodbye, how long an adopted worker waits for its server to stop it
#: before it ends itself with SIGTERM's default action. Signalled with its process
#: group, hypercorn stops it well within this (its ``graceful_timeout`` defaults to
#: 3 s); past it, what is still running (an HTTP request under a longer timeout)
#: ends as it would have at once without the handler.
EXIT_AFTER_GOODBYE = 10.0

_tuned = False
_closed = 0


def tune_gc() -> None:
    """Freeze what exists now (the imported app, its startup state) and collect young objects rarely.

    Frozen objects are never scanned again, so a full collection costs only what
    the connections hold; with a young-generation threshold of ``YOUNG_THRESHOLD``
    net allocations instead of 700, collections come when garbage cycles
    accumulate, not while messages are in flight; a tuned process also collects
    the young generation every ``COLLECT_EVERY`` WebSocket connections a trioapi
    app has ended, so what a server leaves per connection goes in small pauses.
    """
    global _tuned
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, 10, 10)
    _tuned = True


def connection_closed() -> None:
    """Count a WebSocket connection an app has handled (served or refused) and that has ended.

    Once the collector is tuned, every ``COLLECT_EVERY``-th call collects the
    young generation.
    """
    global _closed
    if _tuned:
        _closed += 1
        if _closed >= COLLECT_EVERY:
            _closed = 0
            gc.collect(0)


def sigterm_left_to_default() -> bool:
    """Whether SIGTERM would kill this process outright: a ``multiprocessing`` worker that leaves it alone."""
    return (
        multiprocessing.parent_process() is not None
        and threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    )


async def adopt_worker_process(
    nursery: trio.Nursery, shutdown_connections: Callable[[], Awaitable[None]]
) -> None:
    """In a ``multiprocessing`` worker of a server that leaves it unconfigured, apply trioapi's policy.

    Called by an app once its lifespan has started; ``shutdown_connections``
    says goodbye to its WebSockets. Anywhere else (a main process, ``trioapi
    run``'s workers, ``TRIOAPI_ADOPT_WORKERS=0``) it does nothing.
    """
    if multiprocessing.parent_process() is None or os.environ.get(ADOPT_WORKERS_ENV, "1") == "0":
        return
    tune_gc()
    if sigterm_left_to_default():
        await nursery.start(goodbye_on_sigterm, shutdown_connections)


async def goodbye_on_sigterm(
    shutdown_connections: Callable[[], Awaitable[None]],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """On SIGTERM, close every WebSocket with 1001, then let the server stop this worker.

    Started with ``nursery.start`` in the app nursery (the handler is in place
    before startup completes) and cancelled when the lifespan ends. The signal
    receiver stays open through the goodbye and the wait, so a second SIGTERM
    (hypercorn's master terminating a worker that is still finishing) cannot cut
    either short.
    """
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        task_status.started()
        async for _ in signals:
            break
        logger.info("SIGTERM: closing every WebSocket connection with 1001")
        await shutdown_connections()
        await trio.sleep(EXIT_AFTER_GOODBYE)
    # Still running: the server was not signalled with this worker and will not stop it.
    logger.warning("SIGTERM: the server did not stop this worker after its goodbye; exiting")
    signal.raise_signal(signal.SIGTERM)  # the receiver is closed: SIGTERM's default action is back
