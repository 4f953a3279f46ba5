"""Which webhook URLs the gateway may send to (server-side request forgery).

A merchant chooses the URL, so without these checks the gateway would POST wherever it is
told: to its own admin ports, the database, or the cloud's metadata service at
169.254.169.254. In production a URL must be https and every address its host resolves to
must be public. The check runs at registration and again before every send, because a name
that resolved to a public address then may resolve to a private one now (DNS rebinding);
the sender then connects to exactly the addresses checked, never resolving the name again.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from payment_gateway.domain.webhooks import UnsafeWebhookUrl

MAX_URL_LENGTH = 2048
RESOLVE_TIMEOUT_SECONDS = 5.0

# (host, port) -> the IP addresses it resolves to, as strings.
Resolver = Callable[[str, int], Awaitable[list[str]]]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Not always covered by the flags of `ipaddress` on Python 3.11: carrier-grade NAT is not
# "private" there, and the IPv6 prefixes below carry an IPv4 address that is reached through it.
_SHARED = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


@dataclass(frozen=True, slots=True)
class ResolvedUrl:
    """A URL that passed the checks, with the addresses to connect to (and only those)."""

    url: str  # as given
    scheme: str  # "http" or "https"
    host: str  # the name (or IP literal) of the URL, lower case, no brackets
    port: int
    addresses: tuple[str, ...]  # checked, in the resolver's order


async def system_resolver(host: str, port: int) -> list[str]:
    """The event loop's getaddrinfo: every address of the host, IPv4 and IPv6."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class UrlGuard:
    """Checks a webhook URL; with ``allow_private`` (development) http and local hosts pass."""

    def __init__(self, *, allow_private: bool, resolver: Resolver | None = None) -> None:
        self._allow_private = allow_private
        self._resolve = resolver or system_resolver

    async def check(self, url: str) -> ResolvedUrl:
        """The checked URL, or UnsafeWebhookUrl saying why it is refused."""
        scheme, host, port = _parse(url)
        if scheme != "https" and not self._allow_private:
            raise UnsafeWebhookUrl("url must use https")
        literal = _ip_literal(host)
        addresses = [str(literal)] if literal is not None else await self._resolved(host, port)
        if not self._allow_private:
            for address in addresses:
                why = non_public_reason(address)
                if why is not None:
                    # The category, not the address: the answer must not map the inside.
                    raise UnsafeWebhookUrl(f"url must point to a public address; {host} is {why}")
        return ResolvedUrl(url, scheme, host, port, tuple(addresses))

    async def _resolved(self, host: str, port: int) -> list[str]:
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT_SECONDS):
                addresses = await self._resolve(host, port)
        except (OSError, TimeoutError):  # socket.gaierror is an OSError
            addresses = []
        valid = [a for a in addresses if _ip_literal(a) is not None]
        if not valid or len(valid) != len(addresses):
            raise UnsafeWebhookUrl(f"url's host {host} does not resolve")
        return list(dict.fromkeys(valid))  # each address once, in the resolver's order


@functools.lru_cache(maxsize=1024)  # every send checks its URL again; the parse is pure
def _parse(url: str) -> tuple[str, str, int]:
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeWebhookUrl(f"url must be at most {MAX_URL_LENGTH} characters")
    try:
        # httpx's parser, so that the URL checked is the URL the sender's client will use.
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise UnsafeWebhookUrl("url is not a valid URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise UnsafeWebhookUrl("url must be an absolute http or https URL with a host")
    if parsed.userinfo:
        raise UnsafeWebhookUrl("url must not contain a user name or password")
    # raw_host is the IDNA (ASCII) form, the name DNS knows; IPv6 comes in brackets.
    host = parsed.raw_host.decode("ascii").strip("[]").lower()
    return parsed.scheme, host, parsed.port or (443 if parsed.scheme == "https" else 80)


def _ip_literal(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def non_public_reason(address: str) -> str | None:
    """Why the address is not a public one ("a loopback address", …), or None if it is."""
    ip = _ip_literal(address)
    if ip is None:
        return "not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        # An IPv6 form of an IPv4 address reaches that IPv4 address: judge that one.
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return non_public_reason(str(embedded))
        if ip.is_site_local:
            return "a site-local address"
    checks = (
        (ip.is_unspecified, "an unspecified address"),
        (ip.is_loopback, "a loopback address"),
        (ip.is_link_local, "a link-local address"),  # 169.254.169.254, the metadata service
        (ip.is_multicast, "a multicast address"),
        (ip.is_private, "a private address"),
        (ip.is_reserved, "a reserved address"),
        (isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED, "a shared (CGNAT) address"),
        (not ip.is_global, "not a global address"),
    )
    return next((why for failed, why in checks if failed), None)
