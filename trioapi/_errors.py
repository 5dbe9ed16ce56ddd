"""Exception groups at API boundaries: users get the one error that happened, not a group of one."""

from __future__ import annotations

import trio

__all__ = ["single_error"]


def single_error(exc: BaseException) -> BaseException:
    """The one meaningful exception inside nested one-leaf exception groups, or ``exc`` itself.

    ``trio.Cancelled`` siblings do not count: they are the echo of the real error
    cancelling its neighbours.
    """
    while isinstance(exc, BaseExceptionGroup):
        rest = exc.subgroup(lambda e: not isinstance(e, trio.Cancelled))
        if rest is None or len(rest.exceptions) != 1:
            return exc
        exc = rest.exceptions[0]
    return exc
