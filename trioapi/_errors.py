"""Exception groups at API boundaries: users get the one error that happened, not a group of one."""

from __future__ import annotations

import trio

__all__ = ["is_cancellation", "single_error"]


def single_error(exc: BaseException) -> BaseException:
    """The one meaningful exception inside nested one-leaf exception groups, or ``exc`` itself.

    ``trio.Cancelled`` siblings do not count: they are the echo of the real error
    cancelling its neighbours.
    """
    while isinstance(exc, BaseExceptionGroup):
        _, rest = exc.split(trio.Cancelled)
        if rest is None or len(rest.exceptions) != 1:
            return exc
        exc = rest.exceptions[0]
    return exc


def is_cancellation(exc: BaseException) -> bool:
    """Whether ``exc`` is ``trio.Cancelled``, or a group of nothing else."""
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(trio.Cancelled)[1] is None
    return isinstance(exc, trio.Cancelled)
