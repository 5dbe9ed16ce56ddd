"""``trioapi_echo`` with the garbage collector left alone: ``TrioAPI(tune_gc=False)``.

trioapi apps tune the collector once their lifespan has started (``tune_gc=True`` by
default); this variant shows what that tuning is worth.
"""

from __future__ import annotations

from bench.servers.trioapi_echo import app

app.tune_gc = False

__all__ = ["app"]
