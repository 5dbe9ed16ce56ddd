"""Drive an ASGI app's lifespan protocol from the server side.

Used by the native transport's server and by the test client, so both start
and stop an app exactly the way hypercorn does.
"""

from __future__ import annotations

import math
from typing import Any

import trio

from trioapi._types import ASGIApp, Message
from trioapi.exceptions import LifespanError

__all__ = ["LifespanDriver", "LifespanError"]


class LifespanDriver:
    """Run ``app``'s lifespan in a task of ``nursery``: ``await startup()``, later ``await shutdown()``.

    ``state`` is the lifespan state dict: what the lifespan yields is stored in
    it, and servers copy it into each connection's scope. ``testing`` marks the
    scope as the test client's.
    """

    def __init__(self, app: ASGIApp, timeout: float = 30.0, *, testing: bool = False) -> None:
        self.app = app
        self.testing = testing
        self.timeout = timeout
        self.state: dict[str, Any] = {}
        self._to_app, self._app_inbox = trio.open_memory_channel[Message](math.inf)
        self._app_outbox, self._replies = trio.open_memory_channel[Message](math.inf)
        self._unsupported = False

    async def _run(self) -> None:
        scope: dict[str, Any] = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }
        if self.testing:
            # The test client runs in the test process: the app must not retune its GC.
            scope["extensions"] = {"trioapi.testing": {}}
        try:
            await self.app(scope, self._app_inbox.receive, self._app_outbox.send)
        except Exception:
            # An app that does not speak lifespan raises on the scope type;
            # like hypercorn, serve it without one if startup had not begun.
            self._unsupported = True
        finally:
            self._app_outbox.close()

    async def startup(self, nursery: trio.Nursery) -> None:
        """Start the lifespan task and wait until the app says it has started."""
        nursery.start_soon(self._run)
        await self._to_app.send({"type": "lifespan.startup"})
        await self._expect("startup")

    async def shutdown(self) -> None:
        """Ask the app to shut down and wait for it to finish."""
        if self._unsupported:
            return
        await self._to_app.send({"type": "lifespan.shutdown"})
        await self._expect("shutdown")

    async def _expect(self, phase: str) -> None:
        with trio.fail_after(self.timeout):
            try:
                reply = await self._replies.receive()
            except trio.EndOfChannel:
                if self._unsupported:
                    return
                raise LifespanError(f"the app ended its lifespan during {phase}") from None
        if reply["type"] == f"lifespan.{phase}.failed":
            raise LifespanError(f"lifespan {phase} failed: {reply.get('message', '')}")
        if reply["type"] != f"lifespan.{phase}.complete":
            raise LifespanError(f"unexpected lifespan message {reply['type']!r} during {phase}")
