"""The client's address: X-Forwarded-For only from a trusted proxy, read from the right."""

from __future__ import annotations

import ipaddress

import pytest

from embedportal.web.client_address import client_address

PROXIES = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128"))


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "trusted", "expected"),
    [
        # No trusted proxy configured: the header is anyone's word and ignored.
        ("127.0.0.1", "203.0.113.5", (), "127.0.0.1"),
        # From a stranger, ignored too, even with proxies configured.
        ("198.51.100.9", "203.0.113.5", PROXIES, "198.51.100.9"),
        # From our proxy: the nearest address that is not one of ours.
        ("10.0.0.2", "203.0.113.5", PROXIES, "203.0.113.5"),
        ("10.0.0.2", "1.2.3.4, 203.0.113.5, 10.0.0.7", PROXIES, "203.0.113.5"),
        # A client's own forged entries sit to the left of what our proxy appended.
        ("10.0.0.2", "6.6.6.6, 203.0.113.5", PROXIES, "203.0.113.5"),
        ("10.0.0.2", "10.0.0.9, 10.0.0.8", PROXIES, "10.0.0.9"),
        ("10.0.0.2", "not-an-address", PROXIES, "10.0.0.2"),
        ("10.0.0.2", "", PROXIES, "10.0.0.2"),
        ("10.0.0.2", "203.0.113.5:4711", PROXIES, "203.0.113.5"),
        ("::1", "[2001:db8::7]:443", PROXIES, "2001:db8::7"),
        ("::ffff:10.0.0.2", "203.0.113.5", PROXIES, "203.0.113.5"),
        ("testclient", "203.0.113.5", PROXIES, "testclient"),
        (None, None, (), ""),
    ],
)
def test_client_address(
    peer: str | None,
    forwarded_for: str | None,
    trusted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...],
    expected: str,
) -> None:
    assert client_address(peer=peer, forwarded_for=forwarded_for, trusted=trusted) == expected
