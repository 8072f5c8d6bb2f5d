"""Where a webhook may point: the URL's rules and the addresses its host resolves to.

A webhook makes the service send requests to a URL a client chose, so without these
checks a client could make it reach what only the service can reach (SSRF): Redis on
127.0.0.1, a cloud's metadata at 169.254.169.254, the private network. The URL is
checked when a webhook is created, and its host's addresses again at every delivery
attempt, after resolution, because a name can resolve elsewhere later (DNS rebinding);
the delivery then connects to an address that was checked, not to the name.

Only `allow_private` (ENDCONTACT_WEBHOOK_ALLOW_PRIVATE, for development and tests)
lets http:// and non-public addresses through.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Any
from urllib.parse import urlsplit

from shared.text import is_text

IPAddress = IPv4Address | IPv6Address

MAX_URL_LENGTH = 2000
# How long the web waits for a name to resolve when a webhook is created.
RESOLVE_TIMEOUT = 2.0

# Not in every Python's idea of non-global (ipaddress's lists change between versions),
# so named here as well.
_SHARED = IPv4Network("100.64.0.0/10")  # carrier-grade NAT (RFC 6598)
_BROADCAST = IPv4Address("255.255.255.255")
_NAT64 = IPv6Network("64:ff9b::/96")  # an IPv4 address in the last 32 bits (RFC 6052)
_NAT64_LOCAL = IPv6Network("64:ff9b:1::/48")  # RFC 8215
# A DNS label: letters, digits, hyphens (underscores too: some real names have them).
_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?")


class AddressError(ValueError):
    """The URL may not be used; the message, fit for a client, says why."""


class BadUrl(AddressError):
    """The URL breaks a rule of its own: scheme, host, user info, length."""


class Unresolvable(AddressError):
    """The host name does not resolve (or not in time)."""


class NotPublic(AddressError):
    """The host resolves to an address the service must not reach."""


@dataclass(frozen=True)
class Target:
    """What a URL connects to: `host` as DNS and TLS see it (IDNA ASCII, no brackets
    around an IPv6 literal), and the port (the scheme's default when none is given)."""

    scheme: str
    host: str
    port: int


def check_url(url: str, allow_private: bool) -> str:
    """`url` if a webhook may use it, else BadUrl: an absolute https:// URL (http://
    only with `allow_private`) with a host, without user info, at most 2000
    characters. The addresses are resolve_public's part."""
    target(url, allow_private)
    return url


def target(url: str, allow_private: bool) -> Target:
    """The scheme, host and port `url` connects to, checked as check_url does."""
    if len(url) > MAX_URL_LENGTH:
        raise BadUrl(f"must be at most {MAX_URL_LENGTH} characters")
    if not is_text(url):
        raise BadUrl("must be text: a lone surrogate (such as \\ud800) is no character")
    # urlsplit quietly drops tabs and newlines, and would read "https://a\n@b" as b.
    if not url.isprintable() or any(char.isspace() for char in url):
        raise BadUrl("must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # a bad port, or brackets that are not an IPv6 address
        raise BadUrl(f"is not a valid URL ({exc})") from None
    schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in schemes:
        allowed = "https:// (or http://)" if allow_private else "https://"
        raise BadUrl(f"must be an absolute {allowed} URL")
    if "@" in parts.netloc:
        raise BadUrl("must not contain user info (user:password@)")
    if not parts.hostname:
        raise BadUrl("must have a host")
    if port == 0:
        raise BadUrl("must not use port 0")
    return Target(parts.scheme, _host(parts.hostname), port or _DEFAULT_PORTS[parts.scheme])


_DEFAULT_PORTS = {"https": 443, "http": 80}


def _host(hostname: str) -> str:
    """The host in ASCII, as a resolver takes it, or BadUrl."""
    if ":" in hostname:
        # urlsplit only lets a colon through inside brackets; it must be an address.
        try:
            return str(IPv6Address(hostname))
        except ValueError:
            raise BadUrl("has a host in brackets that is not an IPv6 address") from None
    try:
        ascii_host = hostname.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise BadUrl("has a host name that is not valid") from None
    name = ascii_host.removesuffix(".")
    labels = name.split(".")
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise BadUrl("has a host name that is not valid")
    return ascii_host


def is_public(address: IPAddress) -> bool:
    """Whether the whole internet, not just this host or its network, reaches
    `address`: not loopback, private, link-local, multicast, reserved, unspecified,
    shared (100.64/10), documentation, nor an IPv6 form of one (IPv4-mapped, 6to4,
    NAT64)."""
    if isinstance(address, IPv6Address):
        if address.ipv4_mapped is not None:
            return is_public(address.ipv4_mapped)
        embedded = address.sixtofour
        if address in _NAT64:
            embedded = IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None and not is_public(embedded):
            return False
        if address in _NAT64_LOCAL or address.is_site_local:
            return False
    elif address in _SHARED:
        return False
    return address.is_global and not (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def is_unicast(address: IPAddress) -> bool:
    """Whether a request can go to `address` at all: what is left to refuse when
    private addresses are allowed."""
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return is_unicast(address.ipv4_mapped)
    return not (address.is_multicast or address.is_unspecified or address == _BROADCAST)


def _kind(address: IPAddress) -> str:
    """What a client is told `address` is, in a word or two."""
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return _kind(address.ipv4_mapped)
    for name, test in (
        ("unspecified", address.is_unspecified),
        ("shared (carrier-grade NAT)", address in _SHARED),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
    ):
        if test:
            return name
    return "non-public"


def check_addresses(
    host: str, infos: Sequence[tuple[Any, ...]], allow_private: bool
) -> list[IPAddress]:
    """The addresses of getaddrinfo's `infos` for `host`, each once, in order; NotPublic
    unless every one may be reached (one bad address is enough to refuse: which one a
    connection would use is not ours to choose)."""
    found: list[IPAddress] = []
    for info in infos:
        # sockaddr is (address, port) or (address, port, flow, scope); an IPv6
        # link-local address may carry its zone ("fe80::1%eth0").
        address = ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    if not found:
        raise Unresolvable(f"{host} resolves to no address")
    allowed = is_unicast if allow_private else is_public
    for address in found:
        if not allowed(address):
            named = f"{address} is" if host == str(address) else f"{host} resolves to {address},"
            raise NotPublic(
                f"{named} a {_kind(address)} address; webhooks may only go to public addresses"
            )
    return found


def resolve_public(host: str, port: int, allow_private: bool) -> list[IPAddress]:
    """The addresses `host` (a Target's host) resolves to now, every one checked
    (check_addresses): connect to one of these, never to the name again, so that the
    name cannot resolve elsewhere in between. Blocks on the system resolver: call it
    from a thread, or use resolve_public_async on an event loop.

    Raises Unresolvable when the name does not resolve, NotPublic when an address
    may not be reached (both AddressError, a ValueError)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise Unresolvable(f"{host} could not be resolved") from None
    return check_addresses(host, infos, allow_private)


# The web's lookups get threads of their own: a resolver that hangs holds these, never
# the event loop's default executor (which other connections use).
_RESOLVERS: ThreadPoolExecutor | None = None


def _resolvers() -> ThreadPoolExecutor:
    # Made on first use: the worker imports this module too and needs no threads here.
    global _RESOLVERS
    if _RESOLVERS is None:
        _RESOLVERS = ThreadPoolExecutor(4, thread_name_prefix="resolve")
    return _RESOLVERS


async def resolve_public_async(
    host: str, port: int, allow_private: bool, timeout: float = RESOLVE_TIMEOUT
) -> list[IPAddress]:
    """resolve_public without blocking the event loop, within `timeout` seconds
    (else Unresolvable)."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            infos = await loop.run_in_executor(
                _resolvers(), lambda: socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            )
    except TimeoutError:
        raise Unresolvable(f"{host} could not be resolved within {timeout:g} s") from None
    except (OSError, UnicodeError):
        raise Unresolvable(f"{host} could not be resolved") from None
    return check_addresses(host, infos, allow_private)
