"""GC tuning for the ``*-gc`` benchmark variants: what a latency-sensitive deployment would do.

Imported by the worker process when it imports the app, so it runs after the framework and the
app are loaded:

* ``gc.freeze()`` moves everything allocated so far (modules, classes, the app) to a permanent
  generation that collections never traverse again, so a full collection costs only what the
  connections allocated;
* a higher generation-0 threshold (700 -> 10,000) makes young collections rarer; objects of a
  message are freed by reference counting anyway, so few survive to be collected.
"""

from __future__ import annotations

import gc


def tune() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
