"""The SSRF address rules every tenant-configured outgoing call shares."""

from __future__ import annotations

import ipaddress

import pytest

from transact.kernel.net import address_kind, ip_literal


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("93.184.216.34", "public"),
        ("2606:2800:220:1::1", "public"),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.0.1", "private"),
        ("fd00::1", "private"),
        ("169.254.169.254", "forbidden"),  # cloud metadata
        ("fe80::1", "forbidden"),
        ("224.0.0.1", "forbidden"),
        ("0.0.0.0", "forbidden"),  # noqa: S104  (an address under test, not a bind)
        ("240.0.0.1", "forbidden"),
    ],
)
def test_addresses_are_classified(address: str, kind: str) -> None:
    assert address_kind(ipaddress.ip_address(address)) == kind


def test_only_ip_literals_are_read_as_addresses() -> None:
    assert ip_literal("fe80::1%eth0") == ipaddress.ip_address("fe80::1")
    assert ip_literal("merchant.example") is None
