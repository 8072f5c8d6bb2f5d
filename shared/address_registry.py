"""The IANA special-purpose address registries, pinned: which blocks are not the public
internet, and what each is called (shared.addresses judges a webhook's addresses by
them). A table apart from the checks, to update from IANA on its own."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network


@dataclass(frozen=True)
class SpecialBlock:
    """One entry of the IANA special-purpose address registries: the block, its name
    there (in lower case, shortened, to read in a refusal) and RFC, and its "Globally
    Reachable": None where the registry says N/A, or nothing (a terminated block)."""

    network: IPv4Network | IPv6Network
    name: str
    rfc: str
    reachable: bool | None


def _block(cidr: str, name: str, rfc: str, reachable: bool | None) -> SpecialBlock:
    return SpecialBlock(ip_network(cidr), name, rfc, reachable)


# The IANA IPv4 and IPv6 Special-Purpose Address Registries, both as last updated on
# 2025-10-09 (iana.org/assignments/iana-ipv4-special-registry and
# iana-ipv6-special-registry), pinned here rather than read from ipaddress: is_global and
# is_private answer from copies of them that change between Python patch releases
# (3.11.7 takes 192.0.0.8 and 3fff::1 for global), so what a webhook may reach would
# depend on the Python that runs the service. The most specific block holding an address
# decides, as the registries mean it: 192.0.0.9/32 is reachable inside 192.0.0.0/24.
# Multicast has registries of its own and is here too: a request cannot go to a group.
SPECIAL_PURPOSE = (
    _block("0.0.0.0/8", '"this network"', "RFC 791", False),
    # The registry's "this host on this network"; clients were told "unspecified".
    _block("0.0.0.0/32", "unspecified", "RFC 1122", False),
    _block("10.0.0.0/8", "private-use", "RFC 1918", False),
    _block("100.64.0.0/10", "shared address space", "RFC 6598", False),
    _block("127.0.0.0/8", "loopback", "RFC 1122", False),
    _block("169.254.0.0/16", "link-local", "RFC 3927", False),
    _block("172.16.0.0/12", "private-use", "RFC 1918", False),
    _block("192.0.0.0/24", "IETF protocol assignments", "RFC 6890", False),
    _block("192.0.0.0/29", "IPv4 service continuity prefix", "RFC 7335", False),
    _block("192.0.0.8/32", "IPv4 dummy address", "RFC 7600", False),
    _block("192.0.0.9/32", "port control protocol anycast", "RFC 7723", True),
    _block("192.0.0.10/32", "traversal using relays around NAT anycast", "RFC 8155", True),
    _block("192.0.0.170/32", "NAT64/DNS64 discovery", "RFC 8880", False),
    _block("192.0.0.171/32", "NAT64/DNS64 discovery", "RFC 8880", False),
    _block("192.0.2.0/24", "documentation (TEST-NET-1)", "RFC 5737", False),
    _block("192.31.196.0/24", "AS112-v4", "RFC 7535", True),
    _block("192.52.193.0/24", "AMT", "RFC 7450", True),
    _block("192.88.99.0/24", "deprecated (6to4 relay anycast)", "RFC 7526", None),
    _block("192.88.99.2/32", "6a44-relay anycast address", "RFC 6751", False),
    _block("192.168.0.0/16", "private-use", "RFC 1918", False),
    _block("192.175.48.0/24", "direct delegation AS112 service", "RFC 7534", True),
    _block("198.18.0.0/15", "benchmarking", "RFC 2544", False),
    _block("198.51.100.0/24", "documentation (TEST-NET-2)", "RFC 5737", False),
    _block("203.0.113.0/24", "documentation (TEST-NET-3)", "RFC 5737", False),
    _block("224.0.0.0/4", "multicast", "RFC 5771", False),  # IPv4 Multicast Address Space
    _block("240.0.0.0/4", "reserved", "RFC 1112", False),
    _block("255.255.255.255/32", "limited broadcast", "RFC 919", False),
    _block("::1/128", "loopback", "RFC 4291", False),
    _block("::/128", "unspecified", "RFC 4291", False),
    # A connection to one goes to its IPv4 address, so that address is judged instead.
    _block("::ffff:0:0/96", "IPv4-mapped", "RFC 4291", False),
    _block("64:ff9b::/96", "IPv4-IPv6 translation", "RFC 6052", True),
    _block("64:ff9b:1::/48", "local-use IPv4-IPv6 translation", "RFC 8215", False),
    _block("100::/64", "discard-only", "RFC 6666", False),
    _block("100:0:0:1::/64", "dummy IPv6 prefix", "RFC 9780", False),
    _block("2001::/23", "IETF protocol assignments", "RFC 2928", False),
    _block("2001::/32", "Teredo", "RFC 4380", None),
    _block("2001:1::1/128", "port control protocol anycast", "RFC 7723", True),
    _block("2001:1::2/128", "traversal using relays around NAT anycast", "RFC 8155", True),
    _block("2001:1::3/128", "DNS-SD service registration protocol anycast", "RFC 9665", True),
    _block("2001:2::/48", "benchmarking", "RFC 5180", False),
    _block("2001:3::/32", "AMT", "RFC 7450", True),
    _block("2001:4:112::/48", "AS112-v6", "RFC 7535", True),
    _block("2001:10::/28", "deprecated (previously ORCHID)", "RFC 4843", None),
    _block("2001:20::/28", "ORCHIDv2", "RFC 7343", True),
    _block("2001:30::/28", "drone remote ID protocol entity tags", "RFC 9374", True),
    _block("2001:db8::/32", "documentation", "RFC 3849", False),
    _block("2002::/16", "6to4", "RFC 3056", None),
    _block("2620:4f:8000::/48", "direct delegation AS112 service", "RFC 7534", True),
    _block("3fff::/20", "documentation", "RFC 9637", False),
    _block("5f00::/16", "segment routing (SRv6) SIDs", "RFC 9602", False),
    _block("fc00::/7", "unique-local", "RFC 4193", False),
    _block("fe80::/10", "link-local", "RFC 4291", False),
    _block("ff00::/8", "multicast", "RFC 4291", False),  # IPv6 Multicast Address Space
)


def special(address: IPv4Address | IPv6Address) -> SpecialBlock | None:
    """The most specific registry block that holds `address`, if any."""
    holding = [block for block in SPECIAL_PURPOSE if address in block.network]
    return max(holding, key=lambda block: block.network.prefixlen, default=None)
