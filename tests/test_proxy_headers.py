"""``--proxy-headers``: the client's address and scheme from a trusted proxy's headers, and only from one."""

from __future__ import annotations

from typing import Any

import pytest

from trioapi.server._proxy import TrustedProxies, apply_proxy_headers


def _scope(peer: str, *headers: tuple[str, str], kind: str = "websocket") -> dict[str, Any]:
    return {
        "type": kind,
        "scheme": "ws" if kind == "websocket" else "http",
        "client": (peer, 4711),
        "headers": [(name.encode(), value.encode()) for name, value in headers],
    }


LOCAL = TrustedProxies.parse("127.0.0.1,::1")


def test_x_forwarded_headers_from_a_trusted_proxy_give_the_clients_address_and_scheme() -> None:
    scope = _scope("127.0.0.1", ("x-forwarded-for", "203.0.113.7"), ("x-forwarded-proto", "https"))
    apply_proxy_headers(scope, LOCAL)
    assert (scope["client"], scope["scheme"]) == (("203.0.113.7", 0), "wss")


def test_the_same_headers_from_another_peer_are_ignored() -> None:
    scope = _scope("198.51.100.9", ("x-forwarded-for", "203.0.113.7"), ("x-forwarded-proto", "https"))
    apply_proxy_headers(scope, LOCAL)
    assert (scope["client"], scope["scheme"]) == (("198.51.100.9", 4711), "ws")


def test_in_a_chain_the_client_is_the_last_address_before_the_trusted_proxies() -> None:
    trusted = TrustedProxies.parse("127.0.0.1, 10.0.0.0/8")
    # The client lied about a first hop; the edge proxy (10.1.2.3) appended the real peer.
    scope = _scope("127.0.0.1", ("x-forwarded-for", "1.2.3.4, 203.0.113.7, 10.1.2.3"))
    apply_proxy_headers(scope, trusted)
    assert scope["client"] == ("203.0.113.7", 0)


def test_the_standard_forwarded_header_wins_and_ipv6_is_unbracketed() -> None:
    scope = _scope(
        "::1",
        ("forwarded", 'for="[2001:db8::7]:4711";proto=https'),
        ("x-forwarded-for", "198.51.100.1"),
        kind="http",
    )
    apply_proxy_headers(scope, LOCAL)
    assert (scope["client"], scope["scheme"]) == (("2001:db8::7", 0), "https")


def test_star_trusts_every_peer_and_a_bad_entry_is_refused_clearly() -> None:
    scope = _scope("198.51.100.9", ("x-forwarded-for", "203.0.113.7"))
    apply_proxy_headers(scope, TrustedProxies.parse("*"))
    assert scope["client"] == ("203.0.113.7", 0)
    with pytest.raises(ValueError, match="'nginx' is not an address or a network"):
        TrustedProxies.parse("127.0.0.1,nginx")
