"""The bank adapter over HTTP: one pooled keep-alive transport for the whole process."""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
import orjson

from payment_gateway.domain.bank import BankAnswer, BankFault
from payment_gateway.domain.operations import OperationKind
from payment_gateway.domain.payment import PaymentRequest
from payment_gateway.domain.three_d_secure import Authentication, AuthenticationStatus
from payment_gateway.http_transport import Http11Transport
from payment_gateway.logging_setup import REQUEST_ID_HEADER, current_request_id
from payment_gateway.metrics import BANK_CALL_ERRORS, BANK_CALL_SECONDS

log = logging.getLogger(__name__)

Answer = TypeVar("Answer", BankAnswer, Authentication)
Parser = Callable[[bytes, str], Answer | BankFault]  # the body of a 200/201, read

# 408 and 429 mean "not processed, or maybe processed": only an inquiry can tell.
_UNCERTAIN_CLIENT_ERRORS = frozenset({408, 429})
_OPERATION_PATHS = {
    OperationKind.CAPTURE: "captures",
    OperationKind.VOID: "voids",
    OperationKind.REFUND: "refunds",
}


class HttpBankAdapter:
    """Deposits and inquiries over one keep-alive connection pool for the whole process.

    It hands each request straight to a transport: the client layer (redirects, cookies,
    auth, URL merging) has nothing to do for two fixed endpoints and cost a third of the CPU
    of a bank call. Over plain http that is the lean transport's own ``send`` (bytes in and
    out, no httpx objects to build); an https bank gets httpx's transport, and tests pass
    ``httpx.MockTransport`` (or any transport), both as ``httpx.Request``s.
    """

    def __init__(
        self,
        base_url: str,
        timeout_seconds: float,
        *,
        max_connections: int = 200,
        api_key: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        base = httpx.URL(base_url.rstrip("/") + "/")
        self._base = base
        self._deposit_url = base.join("api/v1/deposit")
        self._inquiry_base = base.join("api/v1/deposits/")
        self._authenticate_url = base.join("api/v1/3ds/authentications")
        self._authentications = base.join("api/v1/3ds/authentications/")
        # The timeout bounds each phase (connect, pool wait, each read); a bank dripping bytes
        # could stretch a call far beyond it, so the whole call also gets one deadline.
        self._deadline = timeout_seconds + 0.25
        self._timeouts = dict.fromkeys(("connect", "read", "write", "pool"), timeout_seconds)
        self._extensions = {"timeout": self._timeouts}
        self._transport = transport or _default_transport(base, max_connections)
        self._auth_headers = {"authorization": f"Bearer {api_key}"} if api_key else {}

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def deposit(
        self, payment_id: str, request: PaymentRequest, authentication_id: str | None = None
    ) -> BankAnswer | BankFault:
        card = _card(request)
        if request.cvv is not None:
            card["cvv"] = request.cvv
        body = orjson.dumps(
            {
                "reference": payment_id,
                "card": card,
                "amount": request.amount,
                "currency": request.currency,
                **({} if request.capture else {"capture": False}),
                **(
                    {"three_d_secure": {"authentication_id": authentication_id}}
                    if authentication_id is not None
                    else {}
                ),
            }
        )
        # A 409 means a deposit with this reference already exists: ask, do not give up.
        return await self._send(
            "deposit", self._deposit_url, payment_id, body, {409}, _parse_answer
        )

    async def authenticate(
        self, payment_id: str, request: PaymentRequest, return_url: str
    ) -> Authentication | BankFault:
        body = orjson.dumps(
            {
                "reference": payment_id,
                "card": _card(request),  # never the CVV: the issuer does not need it
                "amount": request.amount,
                "currency": request.currency,
                "return_url": return_url,
            }
        )
        return await self._send(
            "authenticate", self._authenticate_url, payment_id, body, set(), _parse_authentication
        )

    async def authentication(self, payment_id: str) -> Authentication | BankFault | None:
        url = self._authentications.join(urllib.parse.quote(payment_id, safe=""))
        return await self._inquire("authentication_inquiry", url, payment_id, _parse_authentication)

    async def _call(
        self, operation: str, method: str, url: httpx.URL, reference: str, body: bytes | None
    ) -> tuple[int, bytes] | BankFault:
        """One exchange under the deadline: its answer, or how it failed (docs/design.md, The
        bank contract): NOT_SENT when the bank cannot have seen it, else UNCERTAIN."""
        try:
            async with asyncio.timeout(self._deadline):
                with BANK_CALL_SECONDS.labels(operation).time():
                    return await self._exchange(method, url, body)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            log.warning("bank unreachable for %s %s: %s", operation, reference, type(exc).__name__)
            return BankFault.NOT_SENT
        except (httpx.HTTPError, TimeoutError) as exc:
            log.warning("bank %s for %s ended in %s", operation, reference, type(exc).__name__)
            return BankFault.UNCERTAIN
        except Exception:
            log.exception("bank %s for %s failed unexpectedly", operation, reference)
            return BankFault.UNCERTAIN

    async def operate(
        self, kind: OperationKind, operation_id: str, payment_id: str, amount: int
    ) -> BankAnswer | BankFault:
        body = orjson.dumps(
            {"reference": operation_id, "deposit_reference": payment_id, "amount": amount}
        )
        # Here a 409 is the bank's own rule (the deposit's state forbids it): a refusal.
        url = self._base.join(f"api/v1/{_OPERATION_PATHS[kind]}")
        return await self._send(kind.value, url, operation_id, body, set(), _parse_answer)

    async def inquire_operation(
        self, kind: OperationKind, operation_id: str
    ) -> BankAnswer | BankFault | None:
        reference = urllib.parse.quote(operation_id, safe="")
        url = self._base.join(f"api/v1/{_OPERATION_PATHS[kind]}/{reference}")
        return await self._inquire(f"{kind.value}_inquiry", url, operation_id, _parse_answer)

    async def _send(
        self,
        operation: str,
        url: httpx.URL,
        reference: str,
        body: bytes,
        uncertain: set[int],
        parse: Parser[Answer],
    ) -> Answer | BankFault:
        result = await self._post(operation, url, reference, body, uncertain, parse)
        if isinstance(result, BankFault):
            BANK_CALL_ERRORS.labels(result.value).inc()
        return result

    async def _post(
        self,
        operation: str,
        url: httpx.URL,
        payment_id: str,
        body: bytes,
        uncertain: set[int],
        parse: Parser[Answer],
    ) -> Answer | BankFault:
        result = await self._call(operation, "POST", url, payment_id, body)
        if isinstance(result, BankFault):
            # Sent, or possibly sent (UNCERTAIN): the bank may have charged. Reconcile, never
            # retry blind; a bug of ours after the request left gives the same answer.
            return result
        status, content = result
        if 400 <= status < 500 and status not in _UNCERTAIN_CLIENT_ERRORS | uncertain:
            log.warning("bank refused payment %s with HTTP %s", payment_id, status)
            return BankFault.REJECTED
        if status not in (200, 201):
            log.warning("bank answered payment %s with HTTP %s", payment_id, status)
            return BankFault.UNCERTAIN
        return parse(content, payment_id)

    async def inquire(self, payment_id: str) -> BankAnswer | BankFault | None:
        url = httpx.URL(f"{self._inquiry_base}{urllib.parse.quote(payment_id, safe='')}")
        return await self._inquire("inquiry", url, payment_id, _parse_answer)

    async def _inquire(
        self,
        operation: str,
        url: httpx.URL,
        payment_id: str,
        parse: Parser[Answer],
    ) -> Answer | BankFault | None:
        result = await self._call(operation, "GET", url, payment_id, None)
        if isinstance(result, BankFault):
            return BankFault.UNCERTAIN  # an inquiry moves nothing: any fault means "ask again"
        status, content = result
        if status == 404:
            return None
        if status != 200:
            return BankFault.UNCERTAIN
        return parse(content, payment_id)

    async def _exchange(self, method: str, url: httpx.URL, body: bytes | None) -> tuple[int, bytes]:
        headers = dict(self._auth_headers)
        if body is not None:
            headers["content-type"] = "application/json"
        request_id = current_request_id()
        if request_id:
            headers[REQUEST_ID_HEADER] = request_id
        if isinstance(self._transport, Http11Transport):
            raw = [(name.encode(), value.encode()) for name, value in headers.items()]
            answer = await self._transport.send(method, url, raw, body, self._timeouts)
            return answer.status, answer.body
        request = httpx.Request(
            method, url, content=body, headers=headers, extensions=self._extensions
        )
        response = await self._transport.handle_async_request(request)
        try:
            content = await response.aread()
        finally:
            await response.aclose()
        return response.status_code, content


def _default_transport(base: httpx.URL, max_connections: int) -> httpx.AsyncBaseTransport:
    if base.scheme == "http":
        return Http11Transport(max_connections=max_connections)
    # TLS stays with httpx's own transport.
    return httpx.AsyncHTTPTransport(
        limits=httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
    )


def _parse_answer(content: bytes, payment_id: str) -> BankAnswer | BankFault:
    try:
        data: Any = orjson.loads(content)
    except orjson.JSONDecodeError:
        log.warning("bank answered payment %s with an unreadable body", payment_id)
        return BankFault.UNCERTAIN
    if not isinstance(data, dict):
        return BankFault.UNCERTAIN
    code, reason, transaction_id = data.get("code"), data.get("reason"), data.get("transaction_id")
    if not isinstance(code, str):
        return BankFault.UNCERTAIN
    return BankAnswer(
        code=code,
        reason=reason[:64] if isinstance(reason, str) else None,  # fits decline_reason
        transaction_id=str(transaction_id)[:64] if transaction_id is not None else None,
    )


def _card(request: PaymentRequest) -> dict[str, Any]:
    return {
        "number": request.pan,
        "expiry": f"{request.expiry_month:02d}/{request.expiry_year}",
        "holder_name": request.holder_name,
    }


def _parse_authentication(content: bytes, payment_id: str) -> Authentication | BankFault:
    try:
        data: Any = orjson.loads(content)
        status = AuthenticationStatus(data["status"])
        identifier = data["id"]
    except (orjson.JSONDecodeError, TypeError, KeyError, ValueError):
        log.warning("bank answered the authentication of %s unreadably", payment_id)
        return BankFault.UNCERTAIN
    if not isinstance(identifier, str):
        return BankFault.UNCERTAIN
    challenge_url = data.get("challenge_url")
    if challenge_url is not None and not (
        isinstance(challenge_url, str) and challenge_url.startswith(("https://", "http://"))
    ):
        # The shopper's browser is sent there: never anything but a web page.
        log.warning("bank answered the authentication of %s with no usable page", payment_id)
        return BankFault.UNCERTAIN

    def text(name: str, limit: int) -> str | None:
        value = data.get(name)
        return value[:limit] if isinstance(value, str) else None

    return Authentication(
        id=identifier[:64],
        status=status,
        flow=text("flow", 16),
        challenge_url=text("challenge_url", 2048),
        eci=text("eci", 2),
        version=text("version", 8),
    )
