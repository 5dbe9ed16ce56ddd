"""Serve an app inside your own Trio program, next to other work; run by ``tests/test_snippets.py``."""

from __future__ import annotations

from functools import partial

import trio

import trioapi
from examples.chat import app
from trioapi.server import ServerConfig


async def main(stop: trio.Event, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    # Chat handlers end at once on 1001; two seconds of grace is plenty for them.
    config = ServerConfig(max_message_size=64 * 1024, graceful_timeout=2.0)
    async with trio.open_nursery() as nursery:
        # port=0 picks a free port; serve reports the one it bound once the app has started.
        port = await nursery.start(
            partial(trioapi.serve, app, host="127.0.0.1", port=0, config=config, shutdown_trigger=stop.wait)
        )
        print(f"chat on http://127.0.0.1:{port}/")
        task_status.started(port)
        # ... start the program's other tasks in the same nursery ...
    # Here stop was set: every WebSocket got close 1001 and the lifespan has shut down.


if __name__ == "__main__":
    trio.run(main, trio.Event())
