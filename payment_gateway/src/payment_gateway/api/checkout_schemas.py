"""Request and response schemas of checkout sessions (docs/design.md, Hosted payment page)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from payment_gateway.api.schemas import Amount, BrowserUrl, Capture, Currency, OrderReference
from payment_gateway.domain.checkout import (
    DEFAULT_EXPIRES_IN,
    MAX_EXPIRES_IN,
    MIN_EXPIRES_IN,
    CheckoutSessionDraft,
)

_REDIRECT_URL_RULES = (
    "An absolute `https` URL (`http` too outside production), at most 2048 characters."
)


class CheckoutSessionCreate(BaseModel):
    """A hosted payment page to open for one payment."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "amount": 1000,
                    "currency": "USD",
                    "reference": "order-1234",
                    "success_url": "https://shop.example/orders/1234/thanks",
                    "cancel_url": "https://shop.example/cart",
                }
            ]
        },
    )

    amount: Amount
    currency: Currency
    reference: OrderReference = None
    success_url: BrowserUrl = Field(
        description=(
            "Where the shopper's browser goes once the payment is made, with `session_id` "
            "added to its query. Not a proof of payment: read the session (or the "
            f"`checkout.session.completed` event) to confirm. {_REDIRECT_URL_RULES}"
        ),
    )
    cancel_url: BrowserUrl = Field(
        description=f"Where the page's link back to the shop goes. {_REDIRECT_URL_RULES}"
    )
    capture: Capture = True
    expires_in_seconds: int = Field(
        int(DEFAULT_EXPIRES_IN.total_seconds()),
        strict=True,
        ge=int(MIN_EXPIRES_IN.total_seconds()),
        le=int(MAX_EXPIRES_IN.total_seconds()),
        description="How long the page takes payments: 30 minutes to 24 hours (default 1 hour).",
    )

    def to_domain(self) -> CheckoutSessionDraft:
        return CheckoutSessionDraft(
            amount=self.amount,
            currency=self.currency,
            reference=self.reference,
            success_url=self.success_url,
            cancel_url=self.cancel_url,
            capture=self.capture,
            expires_in=timedelta(seconds=self.expires_in_seconds),
        )


class CheckoutSessionOut(BaseModel):
    """A checkout session as it stands now."""

    id: str = Field(examples=["cs_01965f2e-1c3a-7d4e-9b1a-2f0c3e4d5a6b"])
    object: Literal["checkout.session"]
    url: str = Field(description="The hosted payment page: send the shopper's browser there.")
    status: Literal["open", "complete", "expired"]
    payment_status: Literal["unpaid", "paid"] = Field(
        description="`paid` once the money is taken; an authorization leaves it `unpaid`"
    )
    amount: int
    currency: str
    reference: str | None
    capture: bool
    success_url: str
    cancel_url: str
    payment_id: str | None = Field(
        description="The latest payment made on the page (`GET /api/v1/payments/{id}`)"
    )
    expires_at: datetime
    created_at: datetime
    updated_at: datetime
