"""Which network addresses an outgoing request may reach (SSRF rules shared by every
service that calls a URL a tenant configured: merchant webhooks, IVR account lookups)."""

from __future__ import annotations

import ipaddress
from typing import Literal

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Kind = Literal["public", "loopback", "private", "forbidden"]


def address_kind(address: Address) -> Kind:
    """`forbidden` (link-local such as cloud metadata, multicast, reserved, unspecified)
    is never reachable; `loopback` and `private` only where a setting allows them."""
    ip: Address = address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if ip.is_loopback:  # before `is_reserved`: ::1 lies in the reserved ::/8
        return "loopback"
    if ip.is_unspecified or ip.is_multicast or ip.is_link_local or ip.is_reserved:
        return "forbidden"
    if ip.is_private or not ip.is_global:
        return "private"
    return "public"


FORBIDDEN_TEXT = "a link-local, multicast, reserved or unspecified address"


def ip_literal(host: str) -> Address | None:
    """The address a host names when it is an IP literal (zone id dropped), else None."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
