"""The webhook URL rules and address checks (shared.addresses), in-process.

Names other than literals are resolved by this machine's resolver: only "localhost"
(which every host maps to loopback) and names under .invalid (RFC 6761: never resolve).

One file over 400 lines: one rule (which addresses a webhook may reach), most of it a
table of cases; the resolver's deadline beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from typing import Any

import pytest

from shared.address_registry import SPECIAL_PURPOSE
from shared.addresses import (
    MAX_URL_LENGTH,
    BadUrl,
    IPAddress,
    NotPublic,
    Resolver,
    ResolverBusy,
    ResolveTimeout,
    Target,
    Unresolvable,
    check_addresses,
    check_url,
    is_public,
    resolve_public_async,
    target,
)
from tests.helpers import wait_until

# The system resolver, with the worker's deadline.
RESOLVER = Resolver(4)

NOT_PUBLIC = [
    "127.0.0.1",  # loopback
    "127.255.255.254",
    "10.1.2.3",  # private
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",  # link-local: the clouds' metadata service
    "100.64.0.1",  # shared (carrier-grade NAT)
    "100.127.255.254",
    "0.0.0.0",  # unspecified
    "0.1.2.3",  # "this network"
    "224.0.0.1",  # multicast
    "239.255.255.250",
    "240.0.0.1",  # reserved
    "255.255.255.255",  # broadcast
    "192.0.2.10",  # documentation
    "198.18.0.1",  # benchmarking
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "fd12:3456::1",
    "fec0::1",  # site-local (deprecated, still not public)
    "ff02::1",
    "2001:db8::1",
    "::ffff:127.0.0.1",  # IPv4-mapped forms of the above
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::ffff:100.64.0.1",
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b:1::1",
]
PUBLIC = ["1.2.3.4", "8.8.8.8", "93.184.215.14", "::ffff:1.2.3.4", "2606:4700:4700::1111"]


@pytest.mark.parametrize("address", NOT_PUBLIC)
def test_not_public(address: str) -> None:
    assert not is_public(ip_address(address))


@pytest.mark.parametrize("address", PUBLIC)
def test_public(address: str) -> None:
    assert is_public(ip_address(address))


# Every block of the IANA IPv4 and IPv6 Special-Purpose Address Registries (as of
# 2025-10-09) and the two multicast ranges, with whether its first and last addresses
# may be reached, written out from the registries by hand: the most specific block
# decides, N/A is refused, and a NAT64 address is judged by the IPv4 address it carries.
REGISTRY = [
    ("0.0.0.0/8", False),
    ("0.0.0.0/32", False),
    ("10.0.0.0/8", False),
    ("100.64.0.0/10", False),
    ("127.0.0.0/8", False),
    ("169.254.0.0/16", False),
    ("172.16.0.0/12", False),
    ("192.0.0.0/24", False),
    ("192.0.0.0/29", False),
    ("192.0.0.8/32", False),
    ("192.0.0.9/32", True),  # anycast: reachable inside the unreachable /24
    ("192.0.0.10/32", True),
    ("192.0.0.170/32", False),
    ("192.0.0.171/32", False),
    ("192.0.2.0/24", False),
    ("192.31.196.0/24", True),
    ("192.52.193.0/24", True),
    ("192.88.99.0/24", False),  # N/A (deprecated)
    ("192.88.99.2/32", False),
    ("192.168.0.0/16", False),
    ("192.175.48.0/24", True),
    ("198.18.0.0/15", False),
    ("198.51.100.0/24", False),
    ("203.0.113.0/24", False),
    ("224.0.0.0/4", False),
    ("240.0.0.0/4", False),
    ("255.255.255.255/32", False),
    ("::1/128", False),
    ("::/128", False),
    ("::ffff:0:0/96", False),  # 0.0.0.0 and 255.255.255.255
    ("64:ff9b::/96", False),  # the same, through NAT64
    ("64:ff9b:1::/48", False),
    ("100::/64", False),
    ("100:0:0:1::/64", False),
    ("2001::/23", False),  # its first address is Teredo's
    ("2001::/32", False),  # N/A
    ("2001:1::1/128", True),
    ("2001:1::2/128", True),
    ("2001:1::3/128", True),
    ("2001:2::/48", False),
    ("2001:3::/32", True),
    ("2001:4:112::/48", True),
    ("2001:10::/28", False),  # terminated: nothing said
    ("2001:20::/28", True),
    ("2001:30::/28", True),
    ("2001:db8::/32", False),
    ("2002::/16", False),  # N/A
    ("2620:4f:8000::/48", True),
    ("3fff::/20", False),
    ("5f00::/16", False),
    ("fc00::/7", False),
    ("fe80::/10", False),
    ("ff00::/8", False),
]


def test_every_pinned_block_is_in_the_table() -> None:
    assert sorted(str(block.network) for block in SPECIAL_PURPOSE) == sorted(
        str(ip_network(cidr)) for cidr, _ in REGISTRY
    )


@pytest.mark.parametrize(("cidr", "reachable"), REGISTRY)
def test_registry_block(cidr: str, reachable: bool) -> None:
    network = ip_network(cidr)
    assert (is_public(network[0]), is_public(network[-1])) == (reachable, reachable)


@pytest.mark.parametrize(
    "address",
    [
        "192.0.0.8",  # IPv4 dummy address: taken for global on Python 3.11.7
        "3fff::1",  # documentation (RFC 9637): the same
        "5f00::1",  # SRv6 SIDs (RFC 9602)
        "100:0:0:1::1",  # dummy IPv6 prefix (RFC 9780)
        "2001:1::4",  # IETF protocol assignments, beside the anycast addresses
        "192.88.99.1",  # deprecated 6to4 relay anycast: N/A, so refused
        "2002:808:808::1",  # 6to4, even of a public address: N/A
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo: N/A
        "::808:808",  # IPv4-compatible (deprecated): outside 2000::/3
        "4000::1",  # not yet allocated by IANA: outside 2000::/3
    ],
)
def test_not_globally_reachable(address: str) -> None:
    assert not is_public(ip_address(address))


@pytest.mark.parametrize(
    "address",
    [
        "192.0.0.9",  # port control protocol anycast
        "192.0.0.10",  # TURN anycast
        "2001:1::1",  # port control protocol anycast: refused by Python 3.11.7
        "2001:1::2",  # TURN anycast
        "2001:1::3",  # DNS-SD service registration protocol anycast (RFC 9665)
        "2001:3::1",  # AMT
        "2001:4:112::1",  # AS112-v6
        "2001:20::1",  # ORCHIDv2
        "2001:30::1",  # drone remote ID (RFC 9374)
        "2001:200::1",  # just past 2001::/23
        "3fff:1000::1",  # just past 3fff::/20
        "64:ff9b::808:808",  # NAT64 of 8.8.8.8
        "::ffff:8.8.8.8",
    ],
)
def test_globally_reachable(address: str) -> None:
    assert is_public(ip_address(address))


def test_python_tables_are_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    # ipaddress's is_global and its kin answer from tables that changed between patch
    # releases; with all of them broken, the answers above stay the same.
    def broken(self: object) -> bool:
        raise AssertionError("ipaddress's tables were consulted")

    for cls in (IPv4Address, IPv6Address):
        for name in ("is_global", "is_private", "is_reserved", "is_loopback", "is_link_local"):
            monkeypatch.setattr(cls, name, property(broken))
    monkeypatch.setattr(IPv6Address, "is_site_local", property(broken))
    for cidr, reachable in REGISTRY:
        network = ip_network(cidr)
        assert (is_public(network[0]), is_public(network[-1])) == (reachable, reachable), cidr
    assert is_public(ip_address("192.0.0.9"))
    assert not is_public(ip_address("192.0.0.8"))
    assert not is_public(ip_address("3fff::1"))


def _infos(*addresses: str) -> list[tuple[object, ...]]:
    """getaddrinfo's answer for `addresses`, as it would give them."""
    infos: list[tuple[object, ...]] = []
    for text in addresses:
        address = ip_address(text)
        if address.version == 4:
            infos.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (text, 443)))
        else:
            infos.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (text, 443, 0, 0)))
    return infos


def test_every_address_must_be_public() -> None:
    # A name with one public and one private address: which a connection would use is
    # the resolver's choice, so the name is refused.
    with pytest.raises(NotPublic, match=r"evil\.test resolves to 10\.0\.0\.1, a non-public"):
        check_addresses("evil.test", _infos("1.2.3.4", "10.0.0.1"), allow_private=False)
    found = check_addresses("ok.test", _infos("1.2.3.4", "1.2.3.4", "2606:4700::1"), False)
    assert found == [ip_address("1.2.3.4"), ip_address("2606:4700::1")]


@pytest.mark.parametrize(
    ("host", "said"),
    [
        # The two the issue found accepted on Python 3.11.7.
        ("192.0.0.8", "192.0.0.8 is a non-public address (IPv4 dummy address, RFC 7600)"),
        ("3fff::1", "3fff::1 is a non-public address (documentation, RFC 9637)"),
        ("::ffff:10.0.0.1", "(private-use, RFC 1918)"),
        ("2002:a00:1::1", "(6to4 form of 10.0.0.1: private-use, RFC 1918)"),
        ("2002:808:808::1", "(6to4, RFC 3056)"),
        ("4000::1", "(reserved by the IETF, RFC 4291)"),
    ],
)
def test_refusal_names_the_registry_block(host: str, said: str) -> None:
    with pytest.raises(NotPublic) as refused:
        check_addresses(host, socket.getaddrinfo(host, 443), allow_private=False)
    assert said in str(refused.value)


HINT = (
    "(ENDCONTACT_WEBHOOK_ALLOW_PRIVATE=true on the service allows http:// and private "
    "addresses, for development only)"
)


@pytest.mark.parametrize(
    ("url", "hinted"),
    [
        ("http://1.2.3.4/hook", True),
        ("http://localhost:8080/hook", True),
        ("ftp://1.2.3.4/hook", False),  # the setting would not let it through either
        ("/hooks/end-contact", False),
    ],
)
def test_an_http_refusal_says_how_to_allow_a_local_receiver(url: str, hinted: bool) -> None:
    with pytest.raises(BadUrl) as refused:
        check_url(url, allow_private=False)
    assert str(refused.value).startswith("must be an absolute https:// URL")
    assert (HINT in str(refused.value)) is hinted


@pytest.mark.parametrize(
    ("address", "hinted"),
    [("127.0.0.1", True), ("10.0.0.1", True), ("fe80::1", True), ("224.0.0.1", False)],
)
def test_a_non_public_refusal_says_how_to_allow_a_local_receiver(
    address: str, hinted: bool
) -> None:
    with pytest.raises(NotPublic) as refused:
        check_addresses("h.test", _infos(address), allow_private=False)
    assert str(refused.value).endswith(HINT) is hinted
    # Allowed, the setting is on already: a refusal then has nothing to add.
    if not hinted:
        with pytest.raises(NotPublic) as still:
            check_addresses("h.test", _infos(address), allow_private=True)
        assert "ENDCONTACT_WEBHOOK_ALLOW_PRIVATE" not in str(still.value)


def test_a_zone_is_read_off_a_link_local_address() -> None:
    with pytest.raises(NotPublic, match="link-local"):
        check_addresses("h.test", _infos("fe80::1%2"), allow_private=False)


def test_no_address_is_unresolvable() -> None:
    with pytest.raises(Unresolvable):
        check_addresses("h.test", [], allow_private=True)


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.1", "169.254.169.254", "::1", "fc00::1"])
def test_private_addresses_pass_when_allowed(address: str) -> None:
    assert check_addresses("h.test", _infos(address), allow_private=True) == [ip_address(address)]


@pytest.mark.parametrize(
    "address", ["0.0.0.0", "224.0.0.1", "255.255.255.255", "::", "ff02::1", "::ffff:224.0.0.1"]
)
def test_no_receiver_is_there_even_when_allowed(address: str) -> None:
    with pytest.raises(NotPublic):
        check_addresses("h.test", _infos(address), allow_private=True)


@pytest.mark.parametrize(
    "host", ["localhost", "127.0.0.1", "127.1", "2130706433", "0x7f.1", "::1", "10.0.0.1"]
)
def test_resolve_refuses_loopback_and_private(host: str) -> None:
    # 127.1, 2130706433 and 0x7f.1 are 127.0.0.1 to the C resolver (inet_aton).
    with pytest.raises(NotPublic):
        RESOLVER.resolve(host, 443, False, 5)


def test_resolve_refusal_names_the_address() -> None:
    with pytest.raises(NotPublic) as refused:
        RESOLVER.resolve("localhost", 443, False, 5)
    assert "localhost resolves to" in str(refused.value)
    assert "loopback" in str(refused.value)


def test_resolve_allows_loopback_when_allowed() -> None:
    found = RESOLVER.resolve("localhost", 443, True, 5)
    assert found
    assert all(address.is_loopback for address in found)


def test_resolve_public_literal() -> None:
    assert RESOLVER.resolve("1.2.3.4", 443, False, 5) == [ip_address("1.2.3.4")]


def test_resolve_unknown_name() -> None:
    with pytest.raises(Unresolvable, match=r"no-such-host\.invalid could not be resolved"):
        RESOLVER.resolve("no-such-host.invalid", 443, False, 5)


def test_resolve_async() -> None:
    assert asyncio.run(resolve_public_async("1.2.3.4", 443, False)) == [ip_address("1.2.3.4")]
    with pytest.raises(NotPublic):
        asyncio.run(resolve_public_async("localhost", 443, False))
    with pytest.raises(Unresolvable):
        asyncio.run(resolve_public_async("no-such-host.invalid", 443, False))


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://example.com/hook", Target("https", "example.com", 443)),
        ("https://Example.COM:8443/a?b=c#d", Target("https", "example.com", 8443)),
        ("HTTPS://example.com", Target("https", "example.com", 443)),
        ("https://example.com./", Target("https", "example.com.", 443)),
        ("https://1.2.3.4/hook", Target("https", "1.2.3.4", 443)),
        ("https://[2606:4700::1111]:444/", Target("https", "2606:4700::1111", 444)),
        ("https://bücher.de/", Target("https", "xn--bcher-kva.de", 443)),
        ("https://a_b.example.com/", Target("https", "a_b.example.com", 443)),
    ],
)
def test_target(url: str, expected: Target) -> None:
    assert target(url, allow_private=False) == expected
    assert check_url(url, allow_private=False) == url


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://example.com/hook", "https://"),
        ("ftp://example.com/", "https://"),
        ("/hook", "https://"),
        ("example.com/hook", "https://"),
        ("//example.com/hook", "https://"),
        ("", "https://"),
        ("https:///hook", "must have a host"),
        ("https://", "must have a host"),
        ("https://:443/", "must have a host"),
        ("https://user:pass@example.com/", "user info"),
        ("https://user@example.com/", "user info"),
        ("https://1.2.3.4\\@127.0.0.1/", "user info"),
        ("https://exa mple.com/", "spaces"),
        ("https://example.com/\n", "spaces"),
        ("https://exam\tple.com/", "spaces"),
        (" https://example.com/", "spaces"),
        ("https://example.com:0/", "port 0"),
        ("https://example.com:99999/", "not a valid URL"),
        ("https://example.com:port/", "not a valid URL"),
        ("https://[zz]/", "not a valid URL"),
        ("https://a..b/", "host name"),
        ("https://%6cocalhost/", "host name"),
        ("https://-a.com/", "host name"),
        ("https://" + "a" * 64 + ".com/", "host name"),
        ("https://\ud800.com/", "lone surrogate"),
        ("https://example.com/" + "a" * MAX_URL_LENGTH, f"at most {MAX_URL_LENGTH}"),
    ],
)
def test_refused(url: str, reason: str) -> None:
    with pytest.raises(BadUrl) as refused:
        check_url(url, allow_private=False)
    assert reason in str(refused.value)
    assert isinstance(refused.value, ValueError)


def test_http_only_when_private_is_allowed() -> None:
    assert target("http://127.0.0.1:8080/h", True) == Target("http", "127.0.0.1", 8080)
    assert target("http://localhost/h", True) == Target("http", "localhost", 80)
    with pytest.raises(BadUrl, match="https:// \\(or http://\\)"):
        target("ftp://localhost/h", True)


def test_longest_url_is_accepted() -> None:
    url = "https://example.com/"
    url += "a" * (MAX_URL_LENGTH - len(url))
    assert check_url(url, allow_private=False) == url


def test_resolve_async_has_a_deadline() -> None:
    # A deadline already past: whatever the resolver does, the answer is Unresolvable.
    with pytest.raises(Unresolvable, match="within 0 s"):
        asyncio.run(resolve_public_async("1.2.3.4", 443, False, timeout=0))


class Hanging:
    """A system resolver that answers only when told to, counting the lookups it got
    and how many were waiting at once."""

    def __init__(self) -> None:
        self.answer = threading.Event()
        self.lock = threading.Lock()
        self.asked: list[str] = []
        self.waiting = self.most = 0

    def __call__(self, host: str, port: int) -> list[tuple[Any, ...]]:
        with self.lock:
            self.asked.append(host)
            self.waiting += 1
            self.most = max(self.most, self.waiting)
        try:
            assert self.answer.wait(10), "never told to answer"
            return socket.getaddrinfo("1.2.3.4", port, type=socket.SOCK_STREAM)
        finally:
            with self.lock:
                self.waiting -= 1


@pytest.fixture
def hanging() -> Iterator[Hanging]:
    resolver = Hanging()
    yield resolver
    resolver.answer.set()


def test_a_hanging_resolver_costs_a_lookup_its_deadline(hanging: Hanging) -> None:
    resolver = Resolver(2, hanging)
    started = time.monotonic()
    with pytest.raises(ResolveTimeout, match=r"a\.example could not be resolved within 0\.1 s"):
        resolver.resolve("a.example", 443, False, 0.1)
    assert time.monotonic() - started < 1
    with pytest.raises(ResolveTimeout):
        asyncio.run(resolver.resolve_async("b.example", 443, False, 0.1))


def test_a_hanging_resolver_holds_at_most_its_threads(hanging: Hanging) -> None:
    resolver = Resolver(2, hanging)
    for host in ("a.example", "b.example"):
        with pytest.raises(ResolveTimeout):
            resolver.resolve(host, 443, False, 0.05)
    # Both threads wait for an answer: a third name is refused at once, not queued.
    started = time.monotonic()
    with pytest.raises(ResolverBusy, match=r"c\.example could not be resolved: .*busy"):
        resolver.resolve("c.example", 443, False, 5)
    assert time.monotonic() - started < 1
    # A name already being looked up waits for that lookup, which answers in time.
    threading.Timer(0.1, hanging.answer.set).start()
    assert resolver.resolve("a.example", 443, False, 5) == [ip_address("1.2.3.4")]
    assert hanging.asked == ["a.example", "b.example"]
    assert hanging.most == 2

    # Answered, the threads are free again.
    def resolved() -> list[IPAddress] | None:
        with contextlib.suppress(ResolverBusy):
            return resolver.resolve("c.example", 443, False, 5)
        return None

    assert wait_until(resolved, 5, "c.example resolved") == [ip_address("1.2.3.4")]


def test_the_resolvers_answer_is_checked() -> None:
    with pytest.raises(NotPublic):
        Resolver(1, lambda host, port: _infos("10.0.0.1")).resolve("h.example", 443, False, 1)
    with pytest.raises(Unresolvable, match=r"h\.example could not be resolved$"):
        Resolver(1, _fails).resolve("h.example", 443, False, 1)


def _fails(host: str, port: int) -> list[tuple[Any, ...]]:
    raise socket.gaierror(socket.EAI_NONAME, "not known")
