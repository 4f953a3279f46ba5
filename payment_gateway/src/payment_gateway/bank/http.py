"""The bank adapter over HTTP: one pooled keep-alive client for the whole process."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpcore
import httpx
import orjson

from payment_gateway.bank.network import AsyncioBackend
from payment_gateway.domain.bank import BankAnswer, BankFault
from payment_gateway.domain.payment import PaymentRequest
from payment_gateway.observability import (
    BANK_CALL_ERRORS,
    BANK_CALL_SECONDS,
    REQUEST_ID_HEADER,
    current_request_id,
)

log = logging.getLogger(__name__)

# 408 and 429 mean "not processed, or maybe processed": only an inquiry can tell.
_UNCERTAIN_CLIENT_ERRORS = frozenset({408, 429})


class HttpBankAdapter:
    def __init__(
        self,
        base_url: str,
        timeout_seconds: float,
        *,
        max_connections: int = 200,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        # httpx's timeout bounds each phase (connect, write, each read); a bank dripping bytes
        # could stretch a call far beyond it, so the whole call also gets one deadline.
        self._deadline = timeout_seconds + 0.25
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(timeout_seconds),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            # The plain-asyncio backend speaks no TLS: an https bank keeps httpx's own backend.
            transport=transport
            or (_asyncio_transport(max_connections) if base_url.startswith("http://") else None),
            headers={"content-type": "application/json"},
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def deposit(self, payment_id: str, request: PaymentRequest) -> BankAnswer | BankFault:
        body = orjson.dumps(
            {
                "reference": payment_id,
                "card": {
                    "number": request.pan,
                    "expiry": f"{request.expiry_month:02d}/{request.expiry_year}",
                    "cvv": request.cvv,
                    "holder_name": request.holder_name,
                },
                "amount": request.amount,
                "currency": request.currency,
            }
        )
        result = await self._deposit(payment_id, body)
        if isinstance(result, BankFault):
            BANK_CALL_ERRORS.labels(result.value).inc()
        return result

    async def _deposit(self, payment_id: str, body: bytes) -> BankAnswer | BankFault:
        request_id = current_request_id()
        headers = {REQUEST_ID_HEADER: request_id} if request_id else None
        try:
            async with asyncio.timeout(self._deadline):
                with BANK_CALL_SECONDS.labels("deposit").time():
                    response = await self._client.post(
                        "/api/v1/deposit", content=body, headers=headers
                    )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            log.warning("bank unreachable for payment %s: %s", payment_id, type(exc).__name__)
            return BankFault.NOT_SENT
        except (httpx.HTTPError, TimeoutError) as exc:
            # Sent, or possibly sent: the bank may have charged. Reconcile, never retry blind.
            log.warning("bank call for payment %s ended in %s", payment_id, type(exc).__name__)
            return BankFault.UNCERTAIN
        status = response.status_code
        # A 409 means a deposit with this reference already exists: ask, do not give up.
        if 400 <= status < 500 and status not in _UNCERTAIN_CLIENT_ERRORS and status != 409:
            log.warning("bank refused payment %s with HTTP %s", payment_id, status)
            return BankFault.REJECTED
        if status not in (200, 201):
            log.warning("bank answered payment %s with HTTP %s", payment_id, status)
            return BankFault.UNCERTAIN
        return _parse_answer(response.content, payment_id)

    async def inquire(self, payment_id: str) -> BankAnswer | BankFault | None:
        try:
            async with asyncio.timeout(self._deadline):
                with BANK_CALL_SECONDS.labels("inquiry").time():
                    response = await self._client.get(f"/api/v1/deposits/{payment_id}")
        except (httpx.HTTPError, TimeoutError) as exc:
            log.info("bank inquiry for %s failed: %s", payment_id, type(exc).__name__)
            return BankFault.UNCERTAIN
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            return BankFault.UNCERTAIN
        return _parse_answer(response.content, payment_id)


def _asyncio_transport(max_connections: int) -> httpx.AsyncHTTPTransport:
    """httpx's transport over a plain-asyncio network backend (see ``bank.network``)."""
    transport = httpx.AsyncHTTPTransport()
    # httpx has no public hook for the network backend; its pool is the documented httpcore
    # AsyncConnectionPool, built here as httpx would build it, with our backend.
    transport._pool = httpcore.AsyncConnectionPool(
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=30.0,
        network_backend=AsyncioBackend(),
    )
    return transport


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
