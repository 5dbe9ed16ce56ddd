"""``trioapi_echo`` with the garbage collector left alone in hypercorn's worker.

Apps adopt the worker processes of hypercorn's command line and tune their
collector (``trioapi.server._process``) unless ``TRIOAPI_ADOPT_WORKERS=0``; this
variant sets it (in the worker, before the lifespan starts) to show what the
tuning is worth.
"""

from __future__ import annotations

import os

from bench.servers.trioapi_echo import app
from trioapi.server._process import ADOPT_WORKERS_ENV

os.environ[ADOPT_WORKERS_ENV] = "0"

__all__ = ["app"]
