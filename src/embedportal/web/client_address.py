"""The client's address: the connection's peer, or `X-Forwarded-For` only behind a trusted proxy.

Anyone can send `X-Forwarded-For`, so it says nothing unless the connection comes from a proxy
we trust (EMBEDPORTAL_TRUSTED_PROXIES) that appends the address it saw. Then the header is read
from the right, skipping our own proxies; the first address that is not one of them is the
client. Pure, no I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _parsed(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [2001:db8::1]:443
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # 203.0.113.7:51234
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, networks: Sequence[Network]
) -> bool:
    return any(address.version == network.version and address in network for network in networks)


def client_address(
    *, peer: str | None, forwarded_for: str | None, trusted: Sequence[Network]
) -> str:
    """The address to count sign-in attempts by (as text; "" when nothing is known)."""
    peer_address = _parsed(peer or "")
    if peer_address is None:
        return (peer or "")[:64]
    if not trusted or not forwarded_for or not _trusted(peer_address, trusted):
        return str(peer_address)
    nearest = peer_address
    for hop in reversed(forwarded_for.split(",")):
        address = _parsed(hop)
        if address is None:
            # Garbage where an address should be: trust what our nearest proxy saw instead.
            return str(nearest)
        if not _trusted(address, trusted):
            return str(address)
        nearest = address
    # Every hop is one of our proxies: the farthest of them is the client.
    return str(nearest)
