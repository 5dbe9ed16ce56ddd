"""An app whose worker process dies a moment after it starts serving, every time: a crash loop."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from trioapi import TrioAPI


@asynccontextmanager
async def die_soon(app: TrioAPI) -> AsyncIterator[None]:
    async def die() -> None:
        await trio.sleep(0.3)
        os._exit(3)

    app.nursery.start_soon(die)
    yield


app = TrioAPI(lifespan=die_soon)
