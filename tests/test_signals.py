"""SIGTERM in a server's worker process: which processes trioapi's handler goes to, and only those.

The live side (hypercorn's CLI signalled as a process group, or its worker alone) is in
``test_lifecycle_live.py`` and ``test_third_party_clients.py``.
"""

from __future__ import annotations

import multiprocessing
import signal
import sys

import pytest
import trio

from trioapi import TrioAPI
from trioapi._lifespan import LifespanDriver
from trioapi._signals import sigterm_left_to_default

#: Exit statuses of the child processes below: how SIGTERM was handled once the app had started.
OURS, DEFAULT, OWN = 10, 11, 12


def _own_handler(signum: int, frame: object) -> None:
    """A handler of the process's own."""


def _sigterm_after_startup(handle_sigterm: bool, own_handler: bool) -> None:
    """In a spawned child: start an app's lifespan, exit with how SIGTERM is handled then."""
    if own_handler:
        signal.signal(signal.SIGTERM, _own_handler)
    app = TrioAPI(handle_sigterm=handle_sigterm, tune_gc=False)

    async def main() -> int:
        async with trio.open_nursery() as nursery:
            driver = LifespanDriver(app)
            await driver.startup(nursery)
            handler = signal.getsignal(signal.SIGTERM)
            await driver.shutdown()
        if handler is _own_handler:
            return OWN
        if handler is signal.SIG_DFL:
            return DEFAULT
        # Ours ends with the lifespan: SIGTERM's default action is back.
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        return OURS

    sys.exit(trio.run(main))


@pytest.mark.parametrize(
    ("handle_sigterm", "own_handler", "expected"),
    [
        (True, False, OURS),  # hypercorn's CLI worker: SIGTERM would kill it outright
        (False, False, DEFAULT),  # the app said no
        (True, True, OWN),  # the process's own handler is kept
    ],
)
def test_a_worker_process_gets_the_handler_unless_it_has_one(
    handle_sigterm: bool, own_handler: bool, expected: int
) -> None:
    child = multiprocessing.get_context("spawn").Process(
        target=_sigterm_after_startup, args=(handle_sigterm, own_handler)
    )
    child.start()
    try:
        child.join(30)
    finally:
        if child.is_alive():
            child.kill()
            child.join(5)
    assert child.exitcode == expected


def test_a_main_process_keeps_sigterm_default() -> None:
    # The test run itself (or a user's program embedding trioapi.serve) is no worker.
    assert multiprocessing.parent_process() is None
    assert not sigterm_left_to_default()
