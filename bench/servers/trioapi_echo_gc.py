"""``trioapi_echo`` with the garbage collector tuned (see ``_gc``)."""

from bench.servers._gc import tune
from bench.servers.trioapi_echo import app

tune()

__all__ = ["app"]
