"""Who is asking, and how people reach the bot, behind a reverse proxy or not.

`X-Forwarded-For/-Proto/-Host` are believed only from a peer listed in `[server] trusted_proxies`;
from anyone else they are ignored, as is the request's `Host` header for anything that leaves the
bot (OAuth redirect_uri, cookie flags): those come from `[server] public_url`, else from a trusted
proxy's X-Forwarded-Proto/-Host, else the configured host:port.
"""

from __future__ import annotations

import functools
import ipaddress
import re

from aiohttp import web

from bot.config import Settings
from bot.services import SETTINGS

_HOST = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?")
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.lru_cache(maxsize=8)
def _networks(trusted: tuple[str, ...]) -> tuple[_Network, ...]:
    return tuple(ipaddress.ip_network(proxy, strict=False) for proxy in trusted)


def _is_trusted(address: str | None, trusted: tuple[str, ...]) -> bool:
    if not address or not trusted:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in _networks(trusted))


def _first(request: web.Request, header: str) -> str:
    """The first (client-side) value of a header a proxy may have sent as a list."""
    return request.headers.get(header, "").split(",")[0].strip()


def from_trusted_proxy(request: web.Request) -> bool:
    return _is_trusted(request.remote, request.app[SETTINGS].server.trusted_proxies)


def client_address(request: web.Request) -> str:
    """The client's IP address: the peer, or behind trusted proxies the last X-Forwarded-For hop that
    is not one of them (hops further left were written by the client and prove nothing)."""
    peer = request.remote or ""
    trusted = request.app[SETTINGS].server.trusted_proxies
    if not _is_trusted(peer, trusted):
        return peer
    hops = [hop.strip() for hop in ",".join(request.headers.getall("X-Forwarded-For", [])).split(",")]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            break  # garbage in the chain: trust nothing left of it
        if not _is_trusted(hop, trusted):
            return hop
    return peer


def public_origin(request: web.Request) -> str:
    """scheme://host[:port] by which browsers reach the bot, never taken from an untrusted Host header."""
    settings: Settings = request.app[SETTINGS]
    if settings.server.public_url:
        return settings.server.public_url
    if from_trusted_proxy(request):
        proto = _first(request, "X-Forwarded-Proto").lower()
        host = _first(request, "X-Forwarded-Host") or request.headers.get("Host", "")
        if proto in ("http", "https") and _HOST.fullmatch(host):
            return f"{proto}://{host}"
    return settings.public_url  # http://host:port as configured
