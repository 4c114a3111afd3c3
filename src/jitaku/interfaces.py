"""Which addresses the world can reach, and which of them this host's interfaces hold.

An address that cannot be public (RFC 1918, loopback, link-local, CGNAT 100.64.0.0/10, unique-local or
multicast IPv6 ...) is never published nor used to send from. The documentation ranges (RFC 5737,
RFC 3849) count as public, as data only, so tests can use them; Python's `is_global` would refuse them.
"""

from __future__ import annotations

import ipaddress
import socket

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_NOT_PUBLIC = [
    ipaddress.ip_network(net)
    for net in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "224.0.0.0/3",
        "::/127",
        "::ffff:0:0/96",
        "fc00::/7",
        "fe80::/10",
        "ff00::/8",
    )
]


def is_public(address: Address) -> bool:
    return not any(address.version == net.version and address in net for net in _NOT_PUBLIC)


def global_ipv6() -> Address | None:
    """Our IPv6 address as the world sees it: the first public one on an interface (no NAT for IPv6)."""
    import psutil  # imported when asked: it costs every process that loads it ~6 MB

    for addresses in psutil.net_if_addrs().values():
        for item in addresses:
            if item.family == socket.AF_INET6:
                address = ipaddress.ip_address(item.address.split("%", 1)[0])
                if is_public(address):
                    return address
    return None
