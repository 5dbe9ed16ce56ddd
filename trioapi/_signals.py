"""SIGTERM in a server's worker process that leaves it to its default action.

hypercorn's command line (``hypercorn --worker-class trio``) serves from worker
processes that it starts with ``multiprocessing`` and that do not handle
SIGTERM: its master process does, and stops them through a shared event. A
SIGTERM sent to the whole process group (``kill -TERM -PGID``, systemd's default
``KillMode=control-group``) therefore killed the workers at once, and every open
WebSocket ended in 1006 instead of 1001. An app whose lifespan starts in such a
process handles SIGTERM itself: it says goodbye (close 1001, handlers see
``WebSocketDisconnect(1001)``, teardown runs), then leaves the server to stop the
worker, as hypercorn's master does when it was signalled too; a worker signalled
alone, which nothing else would stop, ends itself as SIGTERM would have.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from trioapi.applications import TrioAPI

logger = logging.getLogger("trioapi")

#: After its goodbye, how long a worker waits for its server to stop it before it
#: ends itself with SIGTERM's default action. Signalled with its process group,
#: hypercorn stops it well within this (its ``graceful_timeout`` defaults to 3 s);
#: past it, what is still running (an HTTP request under a longer timeout) ends as
#: it would have at once without this handler.
EXIT_AFTER_GOODBYE = 10.0


def sigterm_left_to_default() -> bool:
    """Whether SIGTERM would kill this process outright: a ``multiprocessing`` worker that leaves it alone.

    Only such a process gets trioapi's handler: one that handles SIGTERM itself
    (``trioapi run`` and its workers, a program of the user's) keeps its own, and
    a main process (the user's own program, a test run) keeps SIGTERM's default.
    """
    return (
        multiprocessing.parent_process() is not None
        and threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    )


async def goodbye_on_sigterm(
    app: TrioAPI, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """On SIGTERM, close every WebSocket with 1001, then let the server stop this worker.

    Started in the app nursery (``nursery.start``: the handler is in place before
    startup completes) and cancelled when the lifespan ends. The signal receiver stays
    open through the goodbye and the wait, so a second SIGTERM (hypercorn's
    master terminating a worker that is still finishing) cannot cut either short.
    """
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        task_status.started()
        async for _ in signals:
            break
        logger.info("SIGTERM: closing %d WebSocket connection(s) with 1001", len(app.connections))
        await app.shutdown_connections()
        await trio.sleep(EXIT_AFTER_GOODBYE)
    # Still running: the server was not signalled with this worker and will not stop it.
    logger.warning("SIGTERM: the server did not stop this worker after its goodbye; exiting")
    signal.raise_signal(signal.SIGTERM)  # the receiver is closed: SIGTERM's default action is back
