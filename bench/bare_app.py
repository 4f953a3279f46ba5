"""The reference "limit" for the benchmark: a bare FastAPI endpoint, no database, no bank.

It reads the same headers, parses and validates the same request body as the gateway (a
pydantic model with the same fields, unknown fields rejected, straight from the raw bytes)
and answers ``201`` with a JSON payment of the same shape (orjson). Whatever the gateway does
beyond this is its own cost.

    uvicorn bare_app:app --app-dir bench --workers 2 --loop uvloop --http httptools
"""

from __future__ import annotations

import gc
import uuid
from datetime import UTC, datetime

import orjson
from fastapi import FastAPI, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

# The same FastAPI settings as the gateway (no OpenTelemetry lookups per request), so the
# reference is the framework at its best, not a handicapped one.
app = FastAPI(
    title="Bare reference endpoint",
    telemetry={"tracing": False, "metrics": False, "logs": False},
)


class Card(BaseModel):
    model_config = ConfigDict(extra="forbid")

    number: StrictStr = Field(min_length=12, max_length=23)
    expiry_month: int = Field(ge=1, le=12)
    expiry_year: int = Field(ge=1000, le=9999)
    cvv: StrictStr = Field(pattern=r"^\d{3,4}$")
    holder_name: StrictStr | None = Field(default=None, max_length=100)


class PaymentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    card: Card
    amount: StrictInt = Field(gt=0, le=2**63 - 1)
    currency: StrictStr = Field(min_length=3, max_length=3)
    reference: StrictStr | None = Field(default=None, max_length=64)


@app.post("/api/v1/payments", status_code=201)
async def create_payment(request: Request) -> Response:
    # The lean path a FastAPI service can take: pydantic-core parses and validates the raw
    # bytes in one step (as the bank simulator does), instead of FastAPI's body parameter
    # (json.loads, then validation) — so this reference is the fastest honest endpoint.
    idempotency_key = request.headers.get("idempotency-key")
    if not request.headers.get("authorization"):
        return Response(b'{"status":401}', status_code=401, media_type="application/json")
    try:
        payment = PaymentRequest.model_validate_json(await request.body())
    except ValidationError as error:
        return Response(
            orjson.dumps({"status": 422, "errors": error.errors(include_url=False)}),
            status_code=422,
            media_type="application/json",
        )
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    payment_id = str(uuid.uuid4())
    number = payment.card.number
    body = {
        "id": payment_id,
        "status": "succeeded",
        "code": "0",
        "decline_reason": None,
        "amount": payment.amount,
        "currency": payment.currency.upper(),
        "reference": payment.reference,
        "tracking_id": idempotency_key,
        "card": {
            "masked_number": "**** **** **** " + number[-4:],
            "last4": number[-4:],
            "brand": "visa",
            "expiry_month": payment.card.expiry_month,
            "expiry_year": payment.card.expiry_year,
        },
        "created_at": now,
        "updated_at": now,
    }
    return Response(
        orjson.dumps(body),
        status_code=201,
        media_type="application/json",
        headers={"Location": "/api/v1/payments/" + payment_id},
    )


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


# As the gateway does after startup: long-lived objects out of the full collections.
gc.collect()
gc.freeze()
