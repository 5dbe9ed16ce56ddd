"""GC tuning for the bare ASGI app's ``-gc`` variant: what trioapi apps do by default.

Imported by the worker process when it imports the app, so it runs after the app is
loaded. ``trioapi.server.tune_gc`` (the function a trioapi app calls in the hypercorn worker it adopts once
its lifespan has started):

* ``gc.freeze()`` moves everything allocated so far (modules, classes, the app) to a permanent
  generation that collections never traverse again, so a full collection costs only what the
  connections allocated;
* a higher generation-0 threshold (700 -> 50,000 net allocations) makes young collections
  rare; objects of a message are freed by reference counting anyway, and only a net growth
  (new connections, garbage cycles) counts towards it.
"""

from __future__ import annotations

from trioapi.server import tune_gc


def tune() -> None:
    tune_gc()
