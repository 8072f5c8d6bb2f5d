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
import contextlib
import re
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, IPv6Network, ip_address
from typing import Any
from urllib.parse import urlsplit

from shared.address_registry import special
from shared.text import NOT_TEXT, is_text

IPAddress = IPv4Address | IPv6Address

MAX_URL_LENGTH = 2000
# How long the web waits for a name to resolve when a webhook is created.
RESOLVE_TIMEOUT = 2.0

_BROADCAST = IPv4Address("255.255.255.255")
# Only this block of the IPv6 space is global unicast; IANA allocates from nothing else
# (its IPv6 Address Space registry: the rest is reserved by the IETF, RFC 4291).
_GLOBAL_UNICAST = IPv6Network("2000::/3")
_NAT64 = IPv6Network("64:ff9b::/96")  # an IPv4 address in the last 32 bits (RFC 6052)
# A DNS label: letters, digits, hyphens (underscores too: some real names have them).
_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?")


# How a developer lets a local receiver through, said where a URL is refused for being
# http:// or non-public: the refusal is where they look.
DEVELOPMENT_ONLY = (
    "ENDCONTACT_WEBHOOK_ALLOW_PRIVATE=true on the service allows http:// and private "
    "addresses, for development only"
)


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
    characters. The addresses are a Resolver's part."""
    target(url, allow_private)
    return url


def target(url: str, allow_private: bool) -> Target:
    """The scheme, host and port `url` connects to, checked as check_url does."""
    if len(url) > MAX_URL_LENGTH:
        raise BadUrl(f"must be at most {MAX_URL_LENGTH} characters")
    if not is_text(url):
        raise BadUrl(NOT_TEXT)
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
        if allow_private:
            raise BadUrl("must be an absolute https:// (or http://) URL")
        hint = f" ({DEVELOPMENT_ONLY})" if parts.scheme == "http" else ""
        raise BadUrl(f"must be an absolute https:// URL{hint}")
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


def _embedded(address: IPv6Address) -> tuple[str, IPv4Address] | None:
    """The IPv4 address a NAT64 or 6to4 address carries, and the form's name."""
    if address in _NAT64:
        return "NAT64", IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return "6to4", address.sixtofour
    return None


def is_public(address: IPAddress) -> bool:
    """Whether the whole internet, not just this host or its network, reaches
    `address`: the most specific registry block holding it says globally reachable, or
    no block holds it (and, for IPv6, it is in 2000::/3); and the IPv4 address that an
    IPv4-mapped, NAT64 or 6to4 address carries is public. N/A (6to4, Teredo) is
    refused: whether a relay takes the request, and to where, is not ours to know."""
    if isinstance(address, IPv6Address):
        if address.ipv4_mapped is not None:
            return is_public(address.ipv4_mapped)
        embedded = _embedded(address)
        if embedded is not None and not is_public(embedded[1]):
            return False
    block = special(address)
    if block is None:
        return isinstance(address, IPv4Address) or address in _GLOBAL_UNICAST
    return block.reachable is True


def is_unicast(address: IPAddress) -> bool:
    """Whether a request can go to `address` at all: what is left to refuse when
    private addresses are allowed."""
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return is_unicast(address.ipv4_mapped)
    return not (address.is_multicast or address.is_unspecified or address == _BROADCAST)


def _kind(address: IPAddress) -> str:
    """What a client is told a refused `address` is: its registry block's name and
    RFC, or what makes it so."""
    if isinstance(address, IPv6Address):
        if address.ipv4_mapped is not None:
            return _kind(address.ipv4_mapped)
        embedded = _embedded(address)
        if embedded is not None and not is_public(embedded[1]):
            form, ipv4 = embedded
            return f"{form} form of {ipv4}: {_kind(ipv4)}"
    block = special(address)
    if block is None:  # IPv6 outside 2000::/3
        return "reserved by the IETF, RFC 4291"
    return f"{block.name}, {block.rfc}"


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
            # Only where the setting would let it through: never for multicast and the like.
            hint = "" if allow_private or not is_unicast(address) else f" ({DEVELOPMENT_ONLY})"
            raise NotPublic(
                f"{named} a non-public address ({_kind(address)}); "
                f"webhooks may only go to public addresses{hint}"
            )
    return found


def _getaddrinfo(host: str, port: int) -> list[tuple[Any, ...]]:
    """The system resolver (looked up at each call, so a test can stand in for it)."""
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)


class ResolveTimeout(Unresolvable):
    """The resolver did not answer within the deadline."""

    def __init__(self, host: str, timeout: float) -> None:
        super().__init__(f"{host} could not be resolved within {timeout:g} s")
        self.timeout = timeout


class ResolverBusy(Unresolvable):
    """Every thread of a Resolver waits for the system resolver: refused at once."""


Lookup = Callable[[str, int], list[tuple[Any, ...]]]


@contextlib.contextmanager
def _lookup_errors(host: str, timeout: float) -> Iterator[None]:
    """A lookup's failures as what a caller is told: not in time (the wait's timeout, or
    the lookup's own), or not at all."""
    try:
        yield
    except TimeoutError:
        raise ResolveTimeout(host, timeout) from None
    except (OSError, UnicodeError):
        raise Unresolvable(f"{host} could not be resolved") from None


class Resolver:
    """The addresses a host (a Target's host) resolves to now, every one checked
    (check_addresses): connect to one of these, never to the name again, so that the
    name cannot resolve elsewhere in between.

    The system resolver (getaddrinfo, which has no timeout of its own) runs in threads
    of this resolver's own, and the caller waits for its answer only so long. A resolver
    that hangs keeps the thread it hangs in, so the threads are bounded: with `threads`
    lookups running, another is refused at once (ResolverBusy) rather than queued
    behind them; and a lookup of a host and port already running is not started again,
    its answer is waited for, so one name that hangs holds one thread however many
    attempts want it.

    Raises Unresolvable when the name does not resolve (ResolveTimeout: not in time;
    ResolverBusy), NotPublic when an address may not be reached (all AddressError, a
    ValueError)."""

    def __init__(self, threads: int, lookup: Lookup = _getaddrinfo) -> None:
        self._threads = threads
        self._lookup = lookup
        self._lock = threading.Lock()
        self._running: dict[tuple[str, int], Future[list[tuple[Any, ...]]]] = {}
        # Threads are made as lookups need them, never more than `threads`.
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="resolve")

    def resolve(self, host: str, port: int, allow_private: bool, timeout: float) -> list[IPAddress]:
        """Within `timeout` seconds (else ResolveTimeout), blocking."""
        lookup = self._start(host, port)
        with _lookup_errors(host, timeout):
            infos = lookup.result(timeout)
        return check_addresses(host, infos, allow_private)

    async def resolve_async(
        self, host: str, port: int, allow_private: bool, timeout: float
    ) -> list[IPAddress]:
        """Within `timeout` seconds, without blocking the event loop."""
        lookup = self._start(host, port)
        with _lookup_errors(host, timeout):
            async with asyncio.timeout(timeout):
                infos = await asyncio.wrap_future(lookup)
        return check_addresses(host, infos, allow_private)

    def _start(self, host: str, port: int) -> Future[list[tuple[Any, ...]]]:
        key = (host, port)
        with self._lock:
            running = self._running.get(key)
            if running is not None:
                return running
            if len(self._running) >= self._threads:
                raise ResolverBusy(
                    f"{host} could not be resolved: the resolver is busy "
                    f"({self._threads} lookups waiting for an answer)"
                )
            lookup: Future[list[tuple[Any, ...]]] = Future()
            # Never cancelled (a caller's timeout cancels only its own wait): others may
            # be waiting for the same answer.
            lookup.set_running_or_notify_cancel()
            self._running[key] = lookup
        self._pool.submit(self._run, key, lookup)
        return lookup

    def _run(self, key: tuple[str, int], lookup: Future[list[tuple[Any, ...]]]) -> None:
        try:
            infos = self._lookup(*key)
        except BaseException as exc:
            self._forget(key)
            lookup.set_exception(exc)
        else:
            self._forget(key)
            lookup.set_result(infos)

    def _forget(self, key: tuple[str, int]) -> None:
        with self._lock:
            del self._running[key]


# The web's lookups get threads of their own: a resolver that hangs holds these, never
# the event loop's default executor (which other connections use).
_WEB = Resolver(4)


async def resolve_public_async(
    host: str, port: int, allow_private: bool, timeout: float = RESOLVE_TIMEOUT
) -> list[IPAddress]:
    """The web's Resolver.resolve_async."""
    return await _WEB.resolve_async(host, port, allow_private, timeout)
