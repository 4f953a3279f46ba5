"""UrlGuard: which webhook URLs pass, with a fake resolver (no DNS, nothing leaves)."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from payment_gateway.domain.webhooks import UnsafeWebhookUrl
from payment_gateway.webhooks.addresses import ResolvedUrl, UrlGuard, non_public_reason

PUBLIC = "93.184.215.14"
PUBLIC_V6 = "2606:2800:21f:cb07:6820:80da:af6b:8b2c"


class FakeResolver:
    """Answers from a table; a name may get a different answer at each lookup (rebinding)."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self._answers = {host: list(turns) for host, turns in answers.items()}
        self.lookups: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append((host, port))
        turns = self._answers.get(host)
        if not turns:
            raise OSError(f"no such host {host}")  # what socket.gaierror is
        return turns.pop(0) if len(turns) > 1 else turns[0]


def production(answers: dict[str, Iterable[str]] | None = None) -> UrlGuard:
    table = {host: [list(ips)] for host, ips in (answers or {}).items()}
    return UrlGuard(allow_private=False, resolver=FakeResolver(table))


async def refused(guard: UrlGuard, url: str) -> str:
    with pytest.raises(UnsafeWebhookUrl) as caught:
        await guard.check(url)
    return caught.value.reason


async def test_a_public_https_url_passes_with_its_addresses() -> None:
    guard = production({"hooks.example.com": [PUBLIC, PUBLIC_V6]})
    resolved = await guard.check("https://Hooks.Example.com/in?x=1")
    assert resolved == ResolvedUrl(
        "https://Hooks.Example.com/in?x=1", "https", "hooks.example.com", 443, (PUBLIC, PUBLIC_V6)
    )


async def test_the_port_is_the_urls_or_the_schemes() -> None:
    guard = production({"hooks.example.com": [PUBLIC]})
    assert (await guard.check("https://hooks.example.com:8443/")).port == 8443
    dev = UrlGuard(allow_private=True, resolver=FakeResolver({"h": [["10.0.0.1"]]}))
    assert (await dev.check("http://h/")).port == 80


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("hooks.example.com/in", "absolute http or https"),
        ("/in", "absolute http or https"),
        ("ftp://hooks.example.com/", "absolute http or https"),
        ("https:///in", "absolute http or https"),
        ("https://user:pw@hooks.example.com/", "user name or password"),
        ("https://user@hooks.example.com/", "user name or password"),
        ("https://hooks.example.com/" + "a" * 2048, "at most 2048"),
        ("http://hooks.example.com/", "https"),
        ("https://[::1/", "not a valid URL"),
    ],
)
async def test_malformed_or_plain_urls_are_refused(url: str, reason: str) -> None:
    assert reason in await refused(production({"hooks.example.com": [PUBLIC]}), url)


async def test_every_reason_names_the_url_field() -> None:
    assert (await refused(production(), "http://x/")).startswith("url ")
    assert (await refused(production(), "https://nowhere.example/")).startswith("url")


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),  # the cloud metadata service
        ("100.64.0.1", "shared"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "address"),  # reserved; Python 3.11 files it as private
        ("255.255.255.255", "private"),
        ("192.0.2.1", "private"),  # documentation
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("fec0::1", "site-local"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:169.254.169.254", "link-local"),
        ("::ffff:10.0.0.1", "private"),
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of 169.254.169.254
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("::127.0.0.1", "reserved"),  # IPv4-compatible, deprecated
    ],
)
def test_non_public_addresses_say_what_they_are(address: str, why: str) -> None:
    reason = non_public_reason(address)
    assert reason is not None
    assert why in reason


@pytest.mark.parametrize("address", [PUBLIC, PUBLIC_V6, "8.8.8.8", "::ffff:8.8.8.8", "1.1.1.1"])
def test_public_addresses_pass(address: str) -> None:
    assert non_public_reason(address) is None


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "10.0.0.1", "169.254.169.254", "::ffff:127.0.0.1", "fe80::1"]
)
async def test_a_name_resolving_to_a_non_public_address_is_refused(address: str) -> None:
    guard = production({"hooks.example.com": [address]})
    reason = await refused(guard, "https://hooks.example.com/")
    assert "public address" in reason
    assert address not in reason  # the inside of the network is not described


async def test_one_non_public_address_among_public_ones_is_enough_to_refuse() -> None:
    guard = production({"hooks.example.com": [PUBLIC, "10.0.0.7"]})
    assert "private" in await refused(guard, "https://hooks.example.com/")


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]:8443/",
        "https://[::ffff:127.0.0.1]/",
        "https://[fe80::1]/",
        "https://0.0.0.0/",
        "https://10.0.0.1/",
    ],
)
async def test_an_ip_literal_is_judged_without_resolving(url: str) -> None:
    resolver = FakeResolver({})
    guard = UrlGuard(allow_private=False, resolver=resolver)
    assert "public address" in await refused(guard, url)
    assert resolver.lookups == []


async def test_a_public_ip_literal_passes() -> None:
    resolved = await production().check(f"https://[{PUBLIC_V6}]/in")
    assert resolved.host == PUBLIC_V6
    assert resolved.addresses == (PUBLIC_V6,)


async def test_localhost_by_name_is_refused() -> None:
    guard = production({"localhost": ["127.0.0.1", "::1"]})
    assert "loopback" in await refused(guard, "https://localhost/")


@pytest.mark.parametrize("answer", [[], ["not-an-ip"], [PUBLIC, "garbage"]])
async def test_a_name_that_does_not_resolve_to_addresses_is_refused(answer: list[str]) -> None:
    guard = production({"hooks.example.com": answer})
    assert "does not resolve" in await refused(guard, "https://hooks.example.com/")


async def test_an_unknown_name_is_refused() -> None:
    assert "does not resolve" in await refused(production(), "https://nowhere.example/")


async def test_rebinding_a_name_public_at_first_then_private_is_refused_the_second_time() -> None:
    resolver = FakeResolver({"hooks.example.com": [[PUBLIC], ["127.0.0.1"]]})
    guard = UrlGuard(allow_private=False, resolver=resolver)
    assert (await guard.check("https://hooks.example.com/")).addresses == (PUBLIC,)
    assert "loopback" in await refused(guard, "https://hooks.example.com/")
    assert resolver.lookups == [("hooks.example.com", 443)] * 2  # resolved each time, not cached


async def test_development_allows_http_and_local_addresses() -> None:
    resolver = FakeResolver({"localhost": [["::1", "127.0.0.1", "127.0.0.1"]]})
    guard = UrlGuard(allow_private=True, resolver=resolver)
    resolved = await guard.check("http://localhost:9000/hooks")
    assert resolved.addresses == ("::1", "127.0.0.1")  # each once, in order
    assert (await guard.check("http://192.168.1.5/")).addresses == ("192.168.1.5",)


async def test_development_still_refuses_malformed_urls_and_credentials() -> None:
    guard = UrlGuard(allow_private=True, resolver=FakeResolver({}))
    assert "user name" in await refused(guard, "http://a:b@127.0.0.1/")
    assert "absolute" in await refused(guard, "file:///etc/passwd")
    assert "does not resolve" in await refused(guard, "http://nowhere.example/")


async def test_an_international_name_is_resolved_in_its_ascii_form() -> None:
    resolver = FakeResolver({"xn--bcher-kva.example": [[PUBLIC]]})
    guard = UrlGuard(allow_private=False, resolver=resolver)
    resolved = await guard.check("https://bücher.example/")
    assert resolved.host == "xn--bcher-kva.example"


async def test_the_system_resolver_is_the_default() -> None:
    # "localhost" resolves from /etc/hosts: nothing leaves the machine.
    guard = UrlGuard(allow_private=False)
    assert "loopback" in await refused(guard, "https://localhost/")
