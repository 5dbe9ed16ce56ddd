"""Proxy headers: the client's real address and scheme, when a trusted proxy says what they are.

Behind nginx, every connection comes from the proxy's address. With
``--proxy-headers``, a connection whose peer is one of ``--forwarded-allow-ips``
(addresses or networks; ``*`` trusts everyone) has its scope's ``client`` and
``scheme`` taken from what the proxy added: the standard ``Forwarded`` header
(RFC 7239, ``for=`` and ``proto=``), or else ``X-Forwarded-For`` and
``X-Forwarded-Proto``. Headers from any other peer are ignored, so a client
cannot claim another address by sending them itself. In a chain of proxies the
client is the last address that is not a trusted proxy.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

import attrs

from trioapi._types import ASGIApp, Receive, Scope, Send

__all__ = ["ProxyHeadersApp", "TrustedProxies", "apply_proxy_headers"]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@attrs.frozen
class TrustedProxies:
    """The peers whose forwarded headers are believed: addresses and networks, or everyone."""

    networks: tuple[_Network, ...] = ()
    everyone: bool = False

    @classmethod
    def parse(cls, spec: str | Iterable[str]) -> TrustedProxies:
        """From ``"127.0.0.1,10.0.0.0/8"`` or a list of such items; ``"*"`` trusts every peer."""
        items = [item.strip() for item in (spec.split(",") if isinstance(spec, str) else spec)]
        items = [item for item in items if item]
        if "*" in items:
            return cls(everyone=True)
        networks = []
        for item in items:
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"--forwarded-allow-ips: {item!r} is not an address or a network") from None
        return cls(tuple(networks))

    def trusts(self, host: str) -> bool:
        """Whether ``host`` (an address as the socket reports it) is a trusted proxy."""
        if self.everyone:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.networks)


def _header(scope: Scope, name: bytes) -> str | None:
    values = [value for key, value in scope.get("headers", ()) if key == name]
    return b", ".join(values).decode("latin-1") if values else None


def _forwarded(value: str) -> tuple[list[str], str | None]:
    """The ``for=`` addresses (in order) and the last ``proto=`` of a ``Forwarded`` header."""
    hosts: list[str] = []
    proto = None
    for element in value.split(","):
        for pair in element.split(";"):
            key, _, item = pair.strip().partition("=")
            item = item.strip().strip('"')
            if key.lower() == "for" and item:
                if item.startswith("["):  # [2001:db8::1]:4711
                    item = item[1 : item.find("]")]
                elif item.count(":") == 1:  # 192.0.2.1:4711
                    item = item.split(":")[0]
                hosts.append(item)
            elif key.lower() == "proto" and item:
                proto = item.lower()
    return hosts, proto


def apply_proxy_headers(scope: Scope, trusted: TrustedProxies) -> None:
    """Rewrite ``scope``'s ``client`` and ``scheme`` from forwarded headers, if its peer is trusted."""
    client = scope.get("client")
    if not client or not trusted.trusts(str(client[0])):
        return
    forwarded = _header(scope, b"forwarded")
    if forwarded is not None:
        hosts, proto = _forwarded(forwarded)
    else:
        chain = _header(scope, b"x-forwarded-for")
        hosts = [host.strip() for host in chain.split(",") if host.strip()] if chain else []
        forwarded_proto = _header(scope, b"x-forwarded-proto")
        proto = forwarded_proto.split(",")[-1].strip().lower() if forwarded_proto else None
    # The client is the last address before the trusted proxies (each appends its peer);
    # through trusted proxies only, the first one.
    untrusted = [host for host in hosts if not trusted.trusts(host)]
    if untrusted or hosts:
        scope["client"] = ((untrusted or hosts)[-1 if untrusted else 0], 0)
    if proto in ("https", "wss"):
        scope["scheme"] = "wss" if scope["type"] == "websocket" else "https"
    elif proto in ("http", "ws"):
        scope["scheme"] = "ws" if scope["type"] == "websocket" else "http"


class ProxyHeadersApp:
    """An ASGI app that applies ``apply_proxy_headers`` to each scope before ``app`` sees it.

    For servers that build the scope themselves (hypercorn). ``__call__`` is a
    plain function returning ``app``'s coroutine, so it adds no frame to a
    connection's await chain.
    """

    def __init__(self, app: ASGIApp, trusted: TrustedProxies) -> None:
        self.app = app
        self.trusted = trusted

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Any:
        if scope["type"] != "lifespan":
            apply_proxy_headers(scope, self.trusted)
        return self.app(scope, receive, send)
