"""Garbage-collector settings for a long-running server process."""

from __future__ import annotations

import gc

__all__ = ["COLLECT_EVERY", "YOUNG_THRESHOLD", "connection_closed", "tune_gc"]

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

_tuned = False
_closed = 0


def tune_gc() -> None:
    """Freeze what exists now (the imported app, its startup state) and collect young objects rarely.

    Frozen objects are never scanned again, so a full collection costs only what
    the connections hold; with a young-generation threshold of ``YOUNG_THRESHOLD``
    net allocations instead of 700, collections come when garbage cycles
    accumulate, not while messages are in flight; a trioapi app also collects
    the young generation every ``COLLECT_EVERY`` WebSocket connections it has
    ended, so what a server leaves per connection goes in small pauses.
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
