"""Exception groups at API boundaries: the one real error comes out, cancellation stays cancellation."""

from __future__ import annotations

import trio

from trioapi._errors import is_cancellation, single_error


def _cancelled() -> trio.Cancelled:
    return trio.Cancelled._create(source="explicit")


def test_single_error_unwraps_nested_one_leaf_groups() -> None:
    error = KeyError("x")
    assert single_error(BaseExceptionGroup("outer", [BaseExceptionGroup("inner", [error])])) is error


def test_single_error_ignores_cancelled_siblings() -> None:
    error = ValueError("real")
    assert single_error(BaseExceptionGroup("g", [error, _cancelled()])) is error


def test_single_error_keeps_a_group_of_several_errors() -> None:
    group = ExceptionGroup("g", [ValueError(1), KeyError(2)])
    assert single_error(group) is group


def test_is_cancellation_for_cancelled_and_groups_of_only_cancelled() -> None:
    assert is_cancellation(_cancelled())
    assert is_cancellation(BaseExceptionGroup("g", [_cancelled(), _cancelled()]))
    assert not is_cancellation(BaseExceptionGroup("g", [_cancelled(), ValueError()]))
    assert not is_cancellation(ValueError())
