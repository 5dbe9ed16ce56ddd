"""Garbage-collector settings for a long-running server process."""

from __future__ import annotations

import gc

__all__ = ["YOUNG_THRESHOLD", "tune_gc"]

#: Allocations (net of frees) between young collections; CPython's default is 700.
#: A fan-out to a thousand connections keeps some 20,000 objects alive at once for
#: a moment (each sender's suspended send), which a low threshold would scan and
#: promote on every message; objects that die by reference counting never count.
YOUNG_THRESHOLD = 50_000


def tune_gc() -> None:
    """Freeze what exists now (the imported app, its startup state) and collect young objects rarely.

    Frozen objects are never scanned again, so a full collection costs only what
    the connections hold; with a young-generation threshold of ``YOUNG_THRESHOLD``
    net allocations instead of 700, collections come when garbage cycles
    accumulate, not while messages are in flight.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, 10, 10)
