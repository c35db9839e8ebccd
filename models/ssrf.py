"""The SSRF guard of link previews: a resolver that keeps only public addresses. It sits under the
HTTP client, so the address checked is the one connected to (DNS rebinding cannot slip past a
separate "resolve, check, then connect"); tests/test_previews.py drives it with a DNS of its own."""

import ipaddress
import socket

from tornado.netutil import DefaultLoopResolver, Resolver


def is_public_address(ip):
    """True only for a globally routable unicast address; loopback, private, link-local, shared
    (CGNAT), multicast, reserved, unspecified and documentation ranges are refused, also when an
    IPv6 address carries one (IPv4-mapped, NAT64, 6to4)."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])  # an IPv6 scope id is not part of it
    except ValueError:
        return False
    if addr.version == 6:
        if addr.teredo:
            return False
        embedded = addr.ipv4_mapped or addr.sixtofour
        if embedded is None and addr in ipaddress.ip_network("64:ff9b::/96"):
            embedded = ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
        if embedded is not None:
            addr = embedded
    bad = (
        addr.is_private
        or addr.is_loopback
        or addr.is_link_local
        or addr.is_multicast
        or addr.is_reserved
        or addr.is_unspecified
        or getattr(addr, "is_site_local", False)  # IPv6 only (fec0::/10)
    )
    return addr.is_global and not bad and not any(addr in net for net in ALSO_REFUSED)


ALSO_REFUSED = [ipaddress.ip_network("192.0.0.0/24")]  # IETF assignments Python counts as global


class RefusedAddress(OSError):
    """Every address a host resolved to is on a network previews may not reach."""


class PublicOnlyResolver(Resolver):
    """Resolves with `resolver` and keeps only public addresses: the HTTP client connects to what
    this returns, so the check applies to the address actually connected to.

    `exempt` is a set of (ip, port) pairs that pass anyway: only tests use it, for an upstream on
    loopback while everything else stays refused."""

    def initialize(self, resolver=None, allow_private=False, exempt=frozenset()):
        self.resolver = resolver or DefaultLoopResolver()
        self.allow_private = allow_private
        self.exempt = exempt

    async def resolve(self, host, port, family=socket.AF_UNSPEC):
        addresses = await self.resolver.resolve(host, port, family)
        if self.allow_private:
            return addresses
        kept = [
            (fam, sockaddr)
            for fam, sockaddr in addresses
            if is_public_address(sockaddr[0]) or (sockaddr[0], sockaddr[1]) in self.exempt
        ]
        if not kept:
            raise RefusedAddress("%s resolves only to addresses previews may not reach" % host)
        return kept

    def close(self):
        self.resolver.close()
