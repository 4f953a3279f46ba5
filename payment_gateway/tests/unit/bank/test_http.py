"""HttpBankAdapter over a mock transport: every row of docs/design.md, The payment flow."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from payment_gateway.bank.http import HttpBankAdapter
from payment_gateway.domain.bank import BankAnswer, BankFault
from payment_gateway.domain.three_d_secure import Authentication, AuthenticationStatus

from ..conftest import MakeRequest

Handler = Callable[[httpx.Request], httpx.Response]
BANK_URL = "http://bank.test:8081/"


class Recorder:
    """A mock bank: answers with ``handler`` and keeps every request it saw."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.handler: Handler = lambda _request: httpx.Response(404)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def adapter(recorder: Recorder) -> AsyncIterator[HttpBankAdapter]:
    bank = HttpBankAdapter(BANK_URL, 2.0, transport=httpx.MockTransport(recorder))
    yield bank
    await bank.aclose()


def answer(status: int = 201, **fields: Any) -> Handler:
    body = {"transaction_id": "tx-1", "reference": "p-1", "status": "succeeded", "code": "0"}
    body.update(fields)
    return lambda _request: httpx.Response(status, json=body)


def raising(exc_type: type[httpx.RequestError]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc_type("simulated", request=request)

    return handler


async def test_deposit_sends_the_payment(
    adapter: HttpBankAdapter, recorder: Recorder, make_request: MakeRequest
) -> None:
    recorder.handler = answer()
    request = make_request(expiry_month=3, expiry_year=2031, amount=4321, currency="EUR")
    await adapter.deposit("payment-id-1", request)

    (sent,) = recorder.requests
    assert sent.method == "POST"
    assert str(sent.url) == "http://bank.test:8081/api/v1/deposit"
    assert sent.headers["content-type"] == "application/json"
    assert json.loads(sent.content) == {
        "reference": "payment-id-1",
        "card": {
            "number": "4242424242424242",
            "expiry": "03/2031",
            "cvv": "123",
            "holder_name": "John Doe",
        },
        "amount": 4321,
        "currency": "EUR",
    }


async def test_deposit_sends_null_holder_name(
    adapter: HttpBankAdapter, recorder: Recorder, make_request: MakeRequest
) -> None:
    recorder.handler = answer()
    await adapter.deposit("p-2", make_request(holder_name=None, expiry_month=11))
    body = json.loads(recorder.requests[0].content)
    assert body["card"]["holder_name"] is None
    assert body["card"]["expiry"] == "11/2042"


@pytest.mark.parametrize(
    ("code", "reason"),
    [("0", None), ("100", "insufficient_funds"), ("200", None), ("999", None)],
)
@pytest.mark.parametrize("status", [200, 201])
async def test_deposit_answers(
    adapter: HttpBankAdapter,
    recorder: Recorder,
    make_request: MakeRequest,
    code: str,
    reason: str | None,
    status: int,
) -> None:
    recorder.handler = answer(status, code=code, reason=reason, transaction_id="tx-42")
    result = await adapter.deposit("p-1", make_request())
    assert result == BankAnswer(code=code, reason=reason, transaction_id="tx-42")


async def test_deposit_answer_with_odd_field_types(
    adapter: HttpBankAdapter, recorder: Recorder, make_request: MakeRequest
) -> None:
    recorder.handler = answer(code="100", reason=123, transaction_id=7)
    result = await adapter.deposit("p-1", make_request())
    assert result == BankAnswer(code="100", reason=None, transaction_id="7")


async def test_deposit_long_transaction_id_is_truncated(
    adapter: HttpBankAdapter, recorder: Recorder, make_request: MakeRequest
) -> None:
    recorder.handler = answer(transaction_id="x" * 500)
    result = await adapter.deposit("p-1", make_request())
    assert isinstance(result, BankAnswer)
    assert result.transaction_id == "x" * 64


@pytest.mark.parametrize(
    ("exc_type", "fault"),
    [
        (httpx.ConnectError, BankFault.NOT_SENT),
        (httpx.ConnectTimeout, BankFault.NOT_SENT),
        (httpx.PoolTimeout, BankFault.NOT_SENT),
        (httpx.ReadTimeout, BankFault.UNCERTAIN),
        (httpx.WriteTimeout, BankFault.UNCERTAIN),
        (httpx.ReadError, BankFault.UNCERTAIN),
        (httpx.WriteError, BankFault.UNCERTAIN),
        (httpx.RemoteProtocolError, BankFault.UNCERTAIN),
    ],
)
async def test_deposit_transport_errors(
    adapter: HttpBankAdapter,
    recorder: Recorder,
    make_request: MakeRequest,
    exc_type: type[httpx.RequestError],
    fault: BankFault,
) -> None:
    recorder.handler = raising(exc_type)
    assert await adapter.deposit("p-1", make_request()) is fault


async def test_an_unexpected_error_in_a_bank_call_is_uncertain_never_a_crash(
    adapter: HttpBankAdapter, recorder: Recorder, make_request: MakeRequest
) -> None:
    def broken(_request: httpx.Request) -> httpx.Response:
        raise RuntimeError("a bug, maybe after the request left")

    recorder.handler = broken
    assert await adapter.deposit("p-1", make_request()) is BankFault.UNCERTAIN
    assert await adapter.inquire("p-1") is BankFault.UNCERTAIN


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 413, 415, 422])
async def test_deposit_client_errors_are_rejections(
    adapter: HttpBankAdapter, recorder: Recorder, make_request: MakeRequest, status: int
) -> None:
    recorder.handler = answer(status)  # even with a body that looks like an answer
    assert await adapter.deposit("p-1", make_request()) is BankFault.REJECTED


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504, 202, 204, 302])
async def test_deposit_uncertain_statuses(
    adapter: HttpBankAdapter, recorder: Recorder, make_request: MakeRequest, status: int
) -> None:
    recorder.handler = answer(status)
    assert await adapter.deposit("p-1", make_request()) is BankFault.UNCERTAIN


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"<html>gateway timeout</html>",
        b"{not json",
        b"[]",
        b'[{"code": "0"}]',
        b'"0"',
        b"0",
        b"null",
        b"{}",
        b'{"transaction_id": "tx-1", "status": "succeeded"}',
        b'{"code": 0}',
        b'{"code": null}',
        b'{"code": ["0"]}',
    ],
)
async def test_deposit_unreadable_answers_are_uncertain(
    adapter: HttpBankAdapter, recorder: Recorder, make_request: MakeRequest, content: bytes
) -> None:
    recorder.handler = lambda _request: httpx.Response(
        201, content=content, headers={"content-type": "application/json"}
    )
    assert await adapter.deposit("p-1", make_request()) is BankFault.UNCERTAIN


async def test_inquire_found(adapter: HttpBankAdapter, recorder: Recorder) -> None:
    recorder.handler = answer(200, code="0", transaction_id="tx-5")
    result = await adapter.inquire("payment-7")
    assert result == BankAnswer(code="0", reason=None, transaction_id="tx-5")
    (sent,) = recorder.requests
    assert sent.method == "GET"
    assert str(sent.url) == "http://bank.test:8081/api/v1/deposits/payment-7"


async def test_inquire_not_found(adapter: HttpBankAdapter, recorder: Recorder) -> None:
    recorder.handler = lambda _request: httpx.Response(404, json={"detail": "no such deposit"})
    assert await adapter.inquire("payment-7") is None


@pytest.mark.parametrize("status", [500, 502, 503, 400, 401, 408, 429, 201])
async def test_inquire_other_statuses_are_uncertain(
    adapter: HttpBankAdapter, recorder: Recorder, status: int
) -> None:
    recorder.handler = answer(status)
    assert await adapter.inquire("payment-7") is BankFault.UNCERTAIN


@pytest.mark.parametrize(
    "exc_type", [httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadTimeout, httpx.ReadError]
)
async def test_inquire_transport_errors_are_uncertain(
    adapter: HttpBankAdapter, recorder: Recorder, exc_type: type[httpx.RequestError]
) -> None:
    recorder.handler = raising(exc_type)
    assert await adapter.inquire("payment-7") is BankFault.UNCERTAIN


async def test_inquire_garbage_body_is_uncertain(
    adapter: HttpBankAdapter, recorder: Recorder
) -> None:
    recorder.handler = lambda _request: httpx.Response(200, content=b"garbage")
    assert await adapter.inquire("payment-7") is BankFault.UNCERTAIN


async def test_deposit_long_reason_fits_the_decline_reason_column(
    adapter: HttpBankAdapter, recorder: Recorder, make_request: MakeRequest
) -> None:
    """The reason becomes ``payments.decline_reason``, a String(64) column.

    The adapter bounds ``transaction_id`` to its 64-character column but not ``reason``: a
    bank answering a long reason makes the guarded update fail on MySQL (data too long), on
    every attempt, so the payment would stay open forever. It must arrive bounded.
    """
    recorder.handler = answer(code="100", reason="r" * 500)
    result = await adapter.deposit("p-1", make_request())
    assert isinstance(result, BankAnswer)
    assert result.reason is not None
    assert 0 < len(result.reason) <= 64


class DrippingTransport(httpx.AsyncBaseTransport):
    """A bank that took the request and is slow to answer (httpx's per-read timeouts
    cannot catch a bank that keeps dripping bytes; a mock transport is not subject to them)."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.requests = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        await asyncio.sleep(self.delay)
        return httpx.Response(201, json={"code": "0", "transaction_id": "late"})


@pytest.mark.parametrize("call", ["deposit", "inquire"])
async def test_a_slow_bank_is_cut_off_at_one_deadline(make_request: MakeRequest, call: str) -> None:
    transport = DrippingTransport(delay=3.0)
    bank = HttpBankAdapter(BANK_URL, 0.05, transport=transport)
    try:
        started = time.monotonic()
        result: BankAnswer | BankFault | None
        if call == "deposit":
            result = await bank.deposit("p-1", make_request())
        else:
            result = await bank.inquire("p-1")
        elapsed = time.monotonic() - started
    finally:
        await bank.aclose()
    assert transport.requests == 1
    assert result is BankFault.UNCERTAIN  # it may have been charged: reconcile
    assert elapsed < 1.5


async def test_an_https_bank_uses_a_tls_capable_transport() -> None:
    """Http11Transport speaks no TLS: an https bank must get httpx's own transport."""
    import socket

    from payment_gateway.bank.http import HttpBankAdapter
    from payment_gateway.domain.bank import BankFault
    from payment_gateway.domain.payment import PaymentRequest

    with socket.socket() as listener:
        # Accepts TCP connections (the kernel's backlog) but never answers the TLS handshake.
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        adapter = HttpBankAdapter(f"https://127.0.0.1:{port}", 0.5)
        request = PaymentRequest("4242424242424242", "123", 12, 2042, None, 1000, "USD", None)
        try:
            # The handshake never completes: nothing was sent, and nothing escapes as a crash.
            assert await adapter.deposit("p-1", request) is BankFault.NOT_SENT
            assert await adapter.inquire("p-1") is BankFault.UNCERTAIN
        finally:
            await adapter.aclose()


async def test_the_bank_api_key_goes_with_every_call(
    recorder: Recorder, make_request: MakeRequest
) -> None:
    bank = HttpBankAdapter(
        BANK_URL, 2.0, api_key="shared-bank-key", transport=httpx.MockTransport(recorder)
    )
    recorder.handler = answer()
    try:
        await bank.deposit("p-1", make_request())
        await bank.inquire("p-1")
    finally:
        await bank.aclose()
    assert [request.headers.get("authorization") for request in recorder.requests] == [
        "Bearer shared-bank-key",
        "Bearer shared-bank-key",
    ]


async def test_without_a_bank_api_key_no_authorization_is_sent(
    adapter: HttpBankAdapter, recorder: Recorder, make_request: MakeRequest
) -> None:
    recorder.handler = answer()
    await adapter.deposit("p-1", make_request())
    await adapter.inquire("p-1")
    assert all("authorization" not in request.headers for request in recorder.requests)


def authentication_answer(http_status: int = 201, **fields: Any) -> Handler:
    body = {
        "id": "auth-1",
        "reference": "p-1",
        "status": "challenge_required",
        "flow": "challenge",
        "challenge_url": "https://bank.test/3ds/challenge/auth-1",
        "eci": None,
        "version": "2.2.0",
        "failure_reason": None,
    }
    body.update(fields)
    return lambda _request: httpx.Response(http_status, json=body)


async def test_authenticate_sends_the_card_without_its_cvv(
    adapter: HttpBankAdapter, recorder: Recorder, make_request: MakeRequest
) -> None:
    recorder.handler = authentication_answer()

    result = await adapter.authenticate("p-1", make_request(), "https://gw.test/3ds/return/p-1")

    (sent,) = recorder.requests
    assert (sent.method, str(sent.url)) == (
        "POST",
        "http://bank.test:8081/api/v1/3ds/authentications",
    )
    assert json.loads(sent.content) == {
        "reference": "p-1",
        "card": {"number": "4242424242424242", "expiry": "12/2042", "holder_name": "John Doe"},
        "amount": 1000,
        "currency": "USD",
        "return_url": "https://gw.test/3ds/return/p-1",
    }
    assert result == Authentication(
        id="auth-1",
        status=AuthenticationStatus.CHALLENGE_REQUIRED,
        flow="challenge",
        challenge_url="https://bank.test/3ds/challenge/auth-1",
        version="2.2.0",
    )


@pytest.mark.parametrize(
    ("handler", "fault"),
    [
        (authentication_answer(422), BankFault.REJECTED),
        (authentication_answer(503), BankFault.UNCERTAIN),
        (authentication_answer(status="bogus"), BankFault.UNCERTAIN),
        (authentication_answer(challenge_url="javascript:alert(1)"), BankFault.UNCERTAIN),
        (lambda _request: httpx.Response(201, content=b"{"), BankFault.UNCERTAIN),
        (raising(httpx.ConnectError), BankFault.NOT_SENT),
        (raising(httpx.ReadTimeout), BankFault.UNCERTAIN),
    ],
    ids=["422", "503", "unknown-status", "script-url", "unreadable", "unreachable", "timeout"],
)
async def test_authenticate_faults(
    adapter: HttpBankAdapter,
    recorder: Recorder,
    make_request: MakeRequest,
    handler: Handler,
    fault: BankFault,
) -> None:
    recorder.handler = handler

    assert await adapter.authenticate("p-1", make_request(), "https://gw.test/r") is fault


async def test_the_authentication_is_read_back_by_reference(
    adapter: HttpBankAdapter, recorder: Recorder
) -> None:
    recorder.handler = authentication_answer(
        200, status="authenticated", challenge_url=None, eci="05"
    )

    result = await adapter.authentication("p/1")

    assert str(recorder.requests[0].url) == (
        "http://bank.test:8081/api/v1/3ds/authentications/p%2F1"
    )
    assert isinstance(result, Authentication)
    assert (result.status, result.eci) == (AuthenticationStatus.AUTHENTICATED, "05")
    recorder.handler = lambda _request: httpx.Response(404)
    assert await adapter.authentication("p-2") is None


async def test_a_deposit_after_3_d_secure_names_it_and_carries_no_cvv(
    adapter: HttpBankAdapter, recorder: Recorder, make_request: MakeRequest
) -> None:
    recorder.handler = answer()

    await adapter.deposit("p-1", make_request(cvv=None), "auth-1")

    sent = json.loads(recorder.requests[0].content)
    assert "cvv" not in sent["card"]
    assert sent["three_d_secure"] == {"authentication_id": "auth-1"}
