"""HttpWebhookSender against a real receiver on 127.0.0.1 (tests/webhook_receiver.py)."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trustme
from payment_gateway.domain.webhooks import WebhookMessage, new_webhook_secret
from payment_gateway.webhooks.addresses import UrlGuard
from payment_gateway.webhooks.sender import USER_AGENT, HttpWebhookSender
from standardwebhooks import Webhook
from webhook_receiver import Answer, WebhookReceiver

from .conftest import free_port

NEW, OLD = new_webhook_secret(), new_webhook_secret()
# Not re-serialised anywhere: odd spacing, key order and non-ASCII must arrive as they are.
BODY = json.dumps(
    {"type": "payment.succeeded", "id": "evt_1", "data": {"object": {"id": "p", "note": "Zoë €"}}},
    ensure_ascii=False,
    indent=1,
).encode()


def message(event_id: str = "evt_1", secrets: tuple[str, ...] = (NEW,)) -> WebhookMessage:
    return WebhookMessage(event_id, BODY, secrets)


async def local_names(host: str, port: int) -> list[str]:
    # A fake DNS: every name is this machine.
    return ["127.0.0.1"]


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(secrets=[NEW]) as running:
        yield running


@pytest.fixture
async def sender() -> AsyncIterator[HttpWebhookSender]:
    guard = UrlGuard(allow_private=True, resolver=local_names)
    client = HttpWebhookSender(guard, timeout_seconds=1.0)
    yield client
    await client.aclose()


async def test_delivered_signed_and_byte_for_byte(
    receiver: WebhookReceiver, sender: HttpWebhookSender
) -> None:
    result = await sender.send(receiver.url, message())
    assert result.delivered, result
    assert (result.status_code, result.error, result.response_excerpt) == (204, None, "")
    (got,) = receiver.requests
    assert got.verified
    assert got.body == BODY
    assert got.method == "POST"
    assert got.headers["webhook-id"] == "evt_1"
    assert got.headers["content-type"] == "application/json"
    assert got.headers["user-agent"] == USER_AGENT
    assert abs(int(got.headers["webhook-timestamp"]) - got.received_at) < 5
    # What a merchant's code does with the library, on what arrived:
    assert Webhook(NEW).verify(got.body, got.headers)["data"]["object"]["note"] == "Zoë €"


async def test_one_signature_per_secret_during_a_rotation(
    receiver: WebhookReceiver, sender: HttpWebhookSender
) -> None:
    receiver.secrets = [NEW, OLD]
    await sender.send(receiver.url, message(secrets=(NEW, OLD)))
    (got,) = receiver.requests
    signatures = got.headers["webhook-signature"].split(" ")
    assert len(signatures) == 2
    assert all(s.startswith("v1,") for s in signatures)
    assert got.matched == (NEW, OLD)
    for secret in (NEW, OLD):  # a merchant still on the old secret verifies too
        Webhook(secret).verify(got.body, got.headers)


async def test_a_receiver_with_another_secret_does_not_verify(
    receiver: WebhookReceiver, sender: HttpWebhookSender
) -> None:
    receiver.secrets = [OLD]
    await sender.send(receiver.url, message(secrets=(NEW,)))
    (got,) = receiver.requests
    assert not got.verified
    assert got.error == "No matching signature found"


async def test_the_connection_goes_to_the_checked_address_with_the_name_as_host(
    receiver: WebhookReceiver, sender: HttpWebhookSender
) -> None:
    url = f"http://hooks.merchant.test:{receiver.port}/webhooks?src=gw#fragment"
    assert (await sender.send(url, message())).delivered
    (got,) = receiver.requests
    assert got.headers["host"] == f"hooks.merchant.test:{receiver.port}"
    assert got.path == "/webhooks"


async def test_a_redirect_is_not_followed(sender: HttpWebhookSender) -> None:
    with WebhookReceiver(secrets=[NEW]) as first, WebhookReceiver(secrets=[NEW]) as elsewhere:
        first.default = Answer(307, headers=(("location", elsewhere.url),))
        result = await sender.send(first.url, message())
        assert not result.delivered
        assert (result.status_code, result.error) == (307, "redirects are not followed")
        assert len(first.requests) == 1
        assert elsewhere.requests == []


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_receiver(authority: trustme.CA, tmp_path: Path) -> Iterator[WebhookReceiver]:
    """A receiver on https with a certificate for hooks.merchant.test only."""
    certificate = authority.issue_cert("hooks.merchant.test")
    certificate.cert_chain_pems[0].write_to_path(tmp_path / "cert.pem")
    certificate.private_key_pem.write_to_path(tmp_path / "key.pem")
    with WebhookReceiver(
        secrets=[NEW], tls=(str(tmp_path / "cert.pem"), str(tmp_path / "key.pem"))
    ) as running:
        yield running


def tls_sender(authority: trustme.CA) -> HttpWebhookSender:
    trusted = ssl.create_default_context()
    authority.configure_trust(trusted)
    return HttpWebhookSender(
        UrlGuard(allow_private=True, resolver=local_names), tls_context=trusted
    )


async def test_https_connects_to_the_checked_address_and_verifies_the_name(
    tls_receiver: WebhookReceiver, authority: trustme.CA
) -> None:
    sender = tls_sender(authority)
    try:
        url = f"https://hooks.merchant.test:{tls_receiver.port}/webhooks"
        first, second = [await sender.send(url, message(f"evt_{n}")) for n in (1, 2)]
    finally:
        await sender.aclose()
    assert first.delivered, first
    assert second.delivered, second
    assert [r.verified for r in tls_receiver.requests] == [True, True]
    assert tls_receiver.requests[0].headers["host"] == f"hooks.merchant.test:{tls_receiver.port}"


async def test_https_to_a_name_the_certificate_does_not_cover_is_a_tls_error(
    tls_receiver: WebhookReceiver, authority: trustme.CA
) -> None:
    sender = tls_sender(authority)
    try:
        result = await sender.send(
            f"https://other.merchant.test:{tls_receiver.port}/webhooks", message()
        )
    finally:
        await sender.aclose()
    assert result.status_code is None
    assert str(result.error).startswith("tls error"), result.error
    assert tls_receiver.requests == []  # nothing was sent to a server that is not the name


@pytest.mark.parametrize("status", [410, 500])
async def test_an_error_status_is_an_answer_not_an_error(
    receiver: WebhookReceiver, sender: HttpWebhookSender, status: int
) -> None:
    receiver.answer_next(Answer(status, body=b'{"detail": "no"}'))
    result = await sender.send(receiver.url, message())
    assert (result.status_code, result.error, result.delivered) == (status, None, False)
    assert result.response_excerpt == '{"detail": "no"}'


async def test_retry_after_is_read(receiver: WebhookReceiver, sender: HttpWebhookSender) -> None:
    receiver.answer_next(Answer(503, retry_after="7"), Answer(429, retry_after="soon"))
    assert (await sender.send(receiver.url, message())).retry_after_seconds == 7.0
    assert (await sender.send(receiver.url, message())).retry_after_seconds is None


async def test_a_slow_receiver_is_a_timeout(
    receiver: WebhookReceiver, sender: HttpWebhookSender
) -> None:
    receiver.default = Answer(200, delay=5)
    result = await sender.send(receiver.url, message())
    assert (result.status_code, result.error) == (None, "timeout")
    assert 900 <= result.duration_ms < 3000
    assert len(receiver.requests) == 1  # it was sent; only the answer was late


async def test_nothing_listening_is_connection_refused(sender: HttpWebhookSender) -> None:
    result = await sender.send(f"http://127.0.0.1:{free_port()}/webhooks", message())
    assert (result.status_code, result.error, result.response_excerpt) == (
        None,
        "connection refused",
        None,
    )


async def test_a_receiver_down_for_a_while_then_back_on_its_port(
    receiver: WebhookReceiver, sender: HttpWebhookSender
) -> None:
    port = receiver.port
    receiver.stop()
    assert (await sender.send(receiver.url, message())).error == "connection refused"
    receiver.start()
    assert receiver.port == port
    assert (await sender.send(receiver.url, message())).delivered
    assert receiver.verified_event_ids() == ["evt_1"]


async def test_the_answer_is_cut_to_1_kib(
    receiver: WebhookReceiver, sender: HttpWebhookSender
) -> None:
    receiver.answer_next(Answer(200, body=b"x" * 1023 + "é".encode() + b"y" * 100_000))
    result = await sender.send(receiver.url, message())
    assert result.delivered
    assert result.response_excerpt == "x" * 1023 + "\ufffd"  # half a character, replaced


async def test_the_next_address_is_tried_when_one_refuses(receiver: WebhookReceiver) -> None:
    async def two_addresses(host: str, port: int) -> list[str]:
        return ["::1", "127.0.0.1"]  # nothing on ::1 at this port

    sender = HttpWebhookSender(UrlGuard(allow_private=True, resolver=two_addresses))
    try:
        result = await sender.send(f"http://hooks.test:{receiver.port}/webhooks", message())
    finally:
        await sender.aclose()
    assert result.delivered, result


async def test_rebinding_to_loopback_is_refused_without_connecting(
    receiver: WebhookReceiver,
) -> None:
    url = f"https://hooks.merchant.test:{receiver.port}/webhooks"
    turns = [["93.184.215.14"], ["127.0.0.1"]]  # public when registered, loopback at send

    async def rebinding(host: str, port: int) -> list[str]:
        return turns.pop(0)

    guard = UrlGuard(allow_private=False, resolver=rebinding)
    await guard.check(url)  # registration: accepted
    sender = HttpWebhookSender(guard)
    try:
        result = await sender.send(url, message())
    finally:
        await sender.aclose()
    assert result.status_code is None
    assert result.error is not None
    assert result.error.startswith("unsafe url: url must point to a public address")
    assert receiver.requests == []


async def test_production_refuses_plain_http_at_send(receiver: WebhookReceiver) -> None:
    sender = HttpWebhookSender(UrlGuard(allow_private=False, resolver=local_names))
    try:
        result = await sender.send(receiver.url, message())
    finally:
        await sender.aclose()
    assert result.error == "unsafe url: url must use https"
    assert receiver.requests == []


async def test_a_corrupt_secret_is_a_failed_attempt_not_an_exception(
    receiver: WebhookReceiver, sender: HttpWebhookSender
) -> None:
    result = await sender.send(receiver.url, message(secrets=("whsec_not*base64",)))
    assert result.error is not None
    assert result.error.startswith("cannot sign")
    assert receiver.requests == []


async def test_many_hosts_share_no_pool_and_idle_pools_are_closed(
    receiver: WebhookReceiver,
) -> None:
    sender = HttpWebhookSender(UrlGuard(allow_private=True, resolver=local_names), max_hosts=2)
    try:
        for name in ("a.test", "b.test", "c.test"):
            url = f"http://{name}:{receiver.port}/webhooks"
            assert (await sender.send(url, message())).delivered
        assert len(sender._pools) == 2
    finally:
        await sender.aclose()
    assert [r.headers["host"].split(":")[0] for r in receiver.requests] == [
        "a.test",
        "b.test",
        "c.test",
    ]


async def test_at_most_a_pool_of_requests_in_flight_per_host(receiver: WebhookReceiver) -> None:
    # The rest wait in the sender, within their deadline, not in httpcore's pool queue.
    receiver.default = Answer(204, delay=0.25)
    guard = UrlGuard(allow_private=True, resolver=local_names)
    sender = HttpWebhookSender(guard, timeout_seconds=5.0, max_connections_per_host=2)
    try:
        started = time.monotonic()
        results = await asyncio.gather(
            *(sender.send(receiver.url, message(f"evt_{n}")) for n in range(6))
        )
        elapsed = time.monotonic() - started
    finally:
        await sender.aclose()
    assert all(result.delivered for result in results), results
    assert elapsed >= 0.7  # three rounds of two, not six at once
    assert not sender._slots  # nothing left held


async def test_the_wait_for_a_place_counts_against_the_attempts_timeout(
    receiver: WebhookReceiver,
) -> None:
    receiver.default = Answer(204, delay=0.7)
    guard = UrlGuard(allow_private=True, resolver=local_names)
    sender = HttpWebhookSender(guard, timeout_seconds=1.0, max_connections_per_host=1)
    try:
        first, second = await asyncio.gather(
            sender.send(receiver.url, message("evt_1")), sender.send(receiver.url, message("evt_2"))
        )
    finally:
        await sender.aclose()
    assert first.delivered, first
    # It waited 0.7 s for the place, then had 0.3 s of its 1 s left for a 0.7 s answer.
    assert (second.status_code, second.error) == (None, "timeout")
    assert second.duration_ms < 1500
