"""``ServerConfig``: the limits every server applies the same way."""

from __future__ import annotations

import ssl

import attrs

from trioapi.server._proxy import TrustedProxies

__all__ = ["ServerConfig"]


@attrs.frozen
class ServerConfig:
    """What every server applies the same way; each default is explained in the deployment guide."""

    #: Close 1009 for a larger message (bytes on hypercorn, characters on native for text).
    max_message_size: int = 1024 * 1024
    #: Keepalive ping interval in seconds; ``None`` turns pings off.
    ping_interval: float | None = 20.0
    #: With pings on, drop a peer that has sent nothing (not even a pong) for this
    #: long: hypercorn's ``read_timeout``; natively, the ping's answer deadline is
    #: ``idle_timeout - ping_interval``. Ignored when pings are off, so that a quiet
    #: but healthy client is never dropped.
    idle_timeout: float | None = 60.0
    #: Seconds open WebSockets get to finish after close 1001 on shutdown.
    graceful_timeout: float = 5.0
    #: Seconds a client has to complete its handshake.
    handshake_timeout: float = 10.0
    #: Native server: agree to permessage-deflate (RFC 7692) when a client offers it,
    #: as browsers do (inflation bounded by ``max_message_size``). hypercorn negotiates
    #: compression by its own rules; trio-websocket never does.
    compression: bool = True
    #: Whether ``serve()`` tunes this process's garbage collector once the app has
    #: started (``trioapi.server.tune_gc``). Off by default here, since it changes
    #: the whole process you embed the server in; ``trioapi run``, which owns its
    #: process, turns it on (``--no-tune-gc`` to opt out).
    tune_gc: bool = False
    #: The path the app is served under, when a proxy strips it from the requests
    #: (``location /chat/ { proxy_pass http://app/; }``): the scope's ``root_path``,
    #: so ``websocket.url`` and ``url_for`` give the public URL.
    root_path: str = ""
    #: Take the client's address and scheme from the ``Forwarded`` or
    #: ``X-Forwarded-For``/``-Proto`` headers of a peer in ``forwarded_allow_ips``.
    proxy_headers: bool = False
    #: The peers whose proxy headers are believed: addresses or networks,
    #: comma-separated, or ``*`` for every peer.
    forwarded_allow_ips: str = attrs.field(default="127.0.0.1,::1")
    #: TLS on every server (``wss://``, ``https://``): the certificate chain and its
    #: private key, PEM files. Without ``keyfile`` the key is read from ``certfile``.
    certfile: str | None = None
    keyfile: str | None = None

    @forwarded_allow_ips.validator
    def _check_forwarded_allow_ips(self, attribute: attrs.Attribute[str], value: str) -> None:
        TrustedProxies.parse(value)  # a ValueError naming the bad item, when the config is made

    def ssl_context(self) -> ssl.SSLContext | None:
        """The server side of TLS for ``certfile``/``keyfile``, or ``None`` without them."""
        if self.certfile is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.certfile, self.keyfile)
        context.set_alpn_protocols(["http/1.1"])
        return context
