"""The client address a request is counted against (rate limits, rules §7).

The TCP peer is the client, unless the peer is one of the operator's ``TRUSTED_PROXIES``
(addresses or CIDR blocks; none by default). Then ``X-Forwarded-For`` is read from the right,
skipping the trusted proxies, and the first address that is not one of them is the client:
everything to its left was written by the client itself and could be anything. Without this,
a client would choose its own rate-limit bucket by sending the header.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from adapters.settings import Network

UNKNOWN = "unknown"


@lru_cache(maxsize=16)
def client_address(peer: str | None, forwarded_for: str, trusted: tuple[Network, ...]) -> str:
    """The right-most address not among ``trusted``, starting from the peer."""
    if peer is None:
        return UNKNOWN
    if not _is_trusted(peer, trusted):
        return peer
    last = peer
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return last  # not an address: the hop that passed it on is the client we know
        if not _is_trusted(hop, trusted):
            return hop
        last = hop
    return last


def _is_trusted(address: str, trusted: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)
