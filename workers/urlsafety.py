"""SSRF rules for URLs Slipway itself requests (the http provisioner): no loopback, private or link-local."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit


class UnsafeURL(ValueError):
    """The URL may not be requested, and why."""


def _address_ok(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Only globally routable unicast addresses (an IPv4-mapped IPv6 address is judged as IPv4)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_loopback or ip.is_link_local)


def check_url(url: str, *, allow_private: bool = False) -> list[str]:
    """Resolve the URL's host and return its addresses, or raise UnsafeURL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeURL(f"only http and https URLs with a host may be requested: {url!r}")
    if parts.username or parts.password:
        raise UnsafeURL("URLs with credentials are not requested")
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80),
                                   type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UnsafeURL(f"cannot resolve {parts.hostname}: {exc}") from None
    addresses = sorted({info[4][0] for info in infos})
    if not allow_private:
        bad = [a for a in addresses if not _address_ok(ipaddress.ip_address(a.split("%")[0]))]
        if bad:
            raise UnsafeURL(f"{parts.hostname} resolves to a non-public address ({', '.join(bad)}); "
                            "set ALLOW_PRIVATE_URLS=true to allow internal targets")
    return addresses
