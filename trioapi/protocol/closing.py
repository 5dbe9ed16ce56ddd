"""A connection's life as RFC 6455 describes it, ending in the closing handshake (section 7).

One ``CloseHandshake`` per connection holds its ``ConnectionState`` and why
the conversation ended, and changes only through ``transition``: every pair
of state and ``CloseEvent`` that can happen has its next state in one table,
and any other pair raises ``IllegalTransition`` naming both. The transport
asks the state what it may send (data only while ``OPEN``; a close frame
while ``OPEN`` or to answer the peer's) and tells the machine what happened.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["CloseEvent", "CloseHandshake", "ConnectionState", "IllegalTransition"]


class ConnectionState(enum.Enum):
    """Where a connection is, as RFC 6455 names it (and wsproto's ``ConnectionState``)."""

    #: The upgrade request is in; no response has gone out.
    CONNECTING = "connecting"
    #: The 101 went out: messages flow both ways.
    OPEN = "open"
    #: Our close frame is out; the peer's answer is due (and nothing more may be sent).
    LOCAL_CLOSING = "local closing"
    #: The peer's close frame came; our answer is due.
    REMOTE_CLOSING = "remote closing"
    #: Both close frames crossed, or the TCP connection ended: nothing more either way.
    CLOSED = "closed"
    #: The handshake was refused with an HTTP response.
    REJECTED = "rejected"

    # Members are singletons: hash by identity, in C (Enum's own hash runs Python per lookup).
    __hash__ = object.__hash__


class CloseEvent(enum.Enum):
    """What happened to a connection, as far as its state is concerned."""

    #: The 101 went out.
    ACCEPT = "accept"
    #: An HTTP refusal went out instead.
    REJECT = "reject"
    #: Our close frame went out.
    SEND_CLOSE = "send close"
    #: The peer's close frame came in.
    RECEIVE_CLOSE = "receive close"
    #: The peer broke the protocol or a limit: our close frame with that code goes
    #: out if we may still send one, and nothing more is read.
    FAIL = "fail"
    #: The TCP connection ended, broke, or was dropped by us.
    LOSE = "lose"

    __hash__ = object.__hash__  # as ConnectionState's


_S = ConnectionState
_E = CloseEvent

#: Every transition that can happen. What a closed connection still meets (a close
#: frame or garbage read after our write found the socket broken, a second drop)
#: changes nothing; what cannot happen (a close frame before the 101, a second
#: accept) is not here, so it raises.
_TRANSITIONS: Final[dict[tuple[ConnectionState, CloseEvent], ConnectionState]] = {
    (_S.CONNECTING, _E.ACCEPT): _S.OPEN,
    (_S.CONNECTING, _E.REJECT): _S.REJECTED,
    (_S.CONNECTING, _E.LOSE): _S.CLOSED,
    (_S.OPEN, _E.SEND_CLOSE): _S.LOCAL_CLOSING,
    (_S.OPEN, _E.RECEIVE_CLOSE): _S.REMOTE_CLOSING,
    (_S.OPEN, _E.FAIL): _S.LOCAL_CLOSING,
    (_S.OPEN, _E.LOSE): _S.CLOSED,
    (_S.LOCAL_CLOSING, _E.RECEIVE_CLOSE): _S.CLOSED,
    (_S.LOCAL_CLOSING, _E.FAIL): _S.CLOSED,  # the answer can no longer be read
    (_S.LOCAL_CLOSING, _E.LOSE): _S.CLOSED,
    (_S.REMOTE_CLOSING, _E.SEND_CLOSE): _S.CLOSED,
    (_S.REMOTE_CLOSING, _E.LOSE): _S.CLOSED,
    (_S.CLOSED, _E.RECEIVE_CLOSE): _S.CLOSED,
    (_S.CLOSED, _E.FAIL): _S.CLOSED,
    (_S.CLOSED, _E.LOSE): _S.CLOSED,
    (_S.REJECTED, _E.LOSE): _S.REJECTED,
}


class IllegalTransition(RuntimeError):
    """An event that cannot happen in the connection's state: a bug in the transport, not the peer."""


class CloseHandshake:
    """One connection's state, why it ended, and since when our close frame awaits its answer."""

    __slots__ = ("closing_since", "reason", "state")

    def __init__(self) -> None:
        self.state = ConnectionState.CONNECTING
        #: Why the conversation is over, as ``(code, reason)``, once it is: the
        #: peer's close, a protocol error or limit we enforced, or 1006 for a lost
        #: connection. The first cause is kept.
        self.reason: tuple[int, str] | None = None
        #: When our close frame went out while the connection was open (the
        #: clock is the caller's): the peer's answer is overdue some time after.
        self.closing_since: float | None = None

    def transition(
        self, event: CloseEvent, reason: tuple[int, str] | None = None, now: float | None = None
    ) -> ConnectionState:
        """Apply ``event`` and return the new state.

        ``reason`` is the cause of a ``RECEIVE_CLOSE``, ``FAIL`` or ``LOSE``;
        ``now`` the time of a ``SEND_CLOSE`` or ``FAIL``, which start the wait
        for the peer's answer when the connection was open.
        """
        state = self.state
        try:
            new = _TRANSITIONS[state, event]
        except KeyError:
            raise IllegalTransition(
                f"a WebSocket connection cannot {event.value} in state {state.value!r}"
            ) from None
        if reason is not None and self.reason is None:
            self.reason = reason
        if state is ConnectionState.OPEN and new is ConnectionState.LOCAL_CLOSING:
            self.closing_since = now
        self.state = new
        return new

    def overdue(self, now: float, timeout: float) -> bool:
        """Whether our close frame has waited more than ``timeout`` for the peer's answer."""
        since = self.closing_since
        return self.state is ConnectionState.LOCAL_CLOSING and since is not None and now - since > timeout
