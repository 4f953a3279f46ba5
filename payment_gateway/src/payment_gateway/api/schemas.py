"""Request and response schemas of the merchant API (separate input and output models)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError

from payment_gateway.domain.card import (
    contains_card_number,
    has_unsafe_characters,
    is_expired,
    normalize_pan,
    pan_problem,
)
from payment_gateway.domain.money import MAX_AMOUNT, parse_currency
from payment_gateway.domain.operations import RefundReason
from payment_gateway.domain.payment import PaymentRequest, PaymentStatus
from payment_gateway.domain.urls import MAX_URL_LENGTH, browser_url_problem
from payment_gateway.service.documents import payment_document
from payment_gateway.service.listing import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    PaymentListQuery,
    PaymentPage,
)
from payment_gateway.service.ports import PaymentFilters

CARD_EXPIRED = "card_expired"
UNSAFE_CHARACTERS = "unsafe_characters"


def safe_text(value: str | None) -> str | None:
    if value is not None and has_unsafe_characters(value):
        raise PydanticCustomError(
            UNSAFE_CHARACTERS, "must not contain control or bidirectional formatting characters"
        )
    return value


def _whole_number(value: Any) -> Any:
    """Accept a JSON integer or a string of digits (the original clients sent strings)."""
    if isinstance(value, bool):
        raise PydanticCustomError("int_type", "must be a whole number")
    if isinstance(value, int):
        return value
    text = value.strip() if isinstance(value, str) else None
    # isascii(): str.isdigit() also accepts superscripts and other scripts' digits.
    if text and text.isascii() and text.isdigit() and len(text) <= 4:
        return int(text)
    raise PydanticCustomError("int_type", "must be a whole number, or a string of digits")


def _number_schema(minimum: int, maximum: int, digits: str) -> WithJsonSchema:
    return WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": minimum, "maximum": maximum},
                {"type": "string", "pattern": f"^[0-9]{{{digits}}}$"},
            ]
        }
    )


ExpiryMonth = Annotated[
    int, BeforeValidator(_whole_number), Field(ge=1, le=12), _number_schema(1, 12, "1,2")
]
ExpiryYear = Annotated[
    int, BeforeValidator(_whole_number), Field(ge=1000, le=9999), _number_schema(1000, 9999, "4")
]


class CardCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    number: Annotated[
        str,
        Field(
            strict=True,
            repr=False,
            min_length=12,
            max_length=64,
            pattern=r"^[0-9 ]+$",
            description="Card number: 12 to 19 digits, Luhn-valid; spaces between groups allowed.",
            examples=["4242424242424242"],
        ),
    ]
    expiry_month: ExpiryMonth = Field(examples=[12])
    expiry_year: ExpiryYear = Field(
        examples=[2042], description="Four digits; the card must not have expired."
    )
    cvv: Annotated[
        str,
        Field(
            strict=True,
            repr=False,
            pattern=r"^[0-9]{3,4}$",
            description="Sent to the bank only: never stored, never logged.",
            examples=["123"],
        ),
    ]
    holder_name: Annotated[
        str | None,
        Field(
            strict=True,
            max_length=100,
            repr=False,
            description="No control or bidirectional formatting characters.",
        ),
        AfterValidator(safe_text),
    ] = None

    @field_validator("number")
    @classmethod
    def _valid_pan(cls, value: str) -> str:
        pan = normalize_pan(value)
        problem = pan_problem(pan)
        if problem:
            raise PydanticCustomError("card_number", problem)
        return pan

    @field_validator("expiry_year")
    @classmethod
    def _not_expired(cls, year: int, info: ValidationInfo) -> int:
        month = info.data.get("expiry_month")
        if month is not None and is_expired(month, year, datetime.now(UTC)):
            raise PydanticCustomError(CARD_EXPIRED, "the card has expired")
        return year


def browser_url(value: str) -> str:
    problem = browser_url_problem(value, https_only=False)  # https in production: the service
    if problem is not None:
        raise PydanticCustomError("url", problem)
    return value


BrowserUrl = Annotated[
    str,
    Field(strict=True, max_length=MAX_URL_LENGTH, json_schema_extra={"format": "uri"}),
    AfterValidator(browser_url),
]


class ThreeDSecureCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    return_url: BrowserUrl = Field(
        description=(
            "Your page the shopper comes back to after a 3-D Secure challenge, with `payment_id`"
            " added to its query; absolute, https in production. Confirm the payment's status"
            " server-side: the redirect is no proof of payment."
        ),
        examples=["https://shop.example/orders/1234/paid"],
    )


def no_card_number(value: str | None) -> str | None:
    if value is not None and contains_card_number(value):
        raise PydanticCustomError("card_number_in_reference", "must not contain a card number")
    return value


def known_currency(value: str) -> str:
    code = parse_currency(value)
    if code is None:
        raise PydanticCustomError("currency", "is not an active ISO 4217 currency code")
    return code


# The fields a payment and a checkout session share.
Amount = Annotated[
    int,
    Field(
        strict=True,
        gt=0,
        le=MAX_AMOUNT,
        description="In the currency's minor unit (cents for USD).",
    ),
]
Currency = Annotated[
    str,
    Field(
        strict=True,
        min_length=3,
        max_length=3,
        description="Active ISO 4217 code, any case.",
        examples=["USD"],
    ),
    AfterValidator(known_currency),
]
OrderReference = Annotated[
    str | None,
    Field(
        strict=True,
        max_length=64,
        description=(
            "Your order id. Stored in clear, so it must not hold a card number (a Luhn-valid"
            " run of 13 to 19 digits), control or bidirectional formatting characters."
        ),
    ),
    AfterValidator(safe_text),
    AfterValidator(no_card_number),
]
Capture = Annotated[
    bool,
    Field(
        strict=True,
        description=(
            "false: only authorize; capture (or cancel) later with"
            " POST /api/v1/payments/{id}/capture (or /cancel)."
        ),
    ),
]


class PaymentCreate(BaseModel):
    """A card payment to make."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "card": {
                        "number": "4242424242424242",
                        "expiry_month": 12,
                        "expiry_year": 2042,
                        "cvv": "123",
                        "holder_name": "John Doe",
                    },
                    "amount": 1000,
                    "currency": "USD",
                    "reference": "order-1234",
                }
            ]
        },
    )

    card: CardCreate
    amount: Amount
    currency: Currency
    reference: OrderReference = None
    capture: Capture = True
    three_d_secure: ThreeDSecureCreate | None = Field(
        None,
        description=(
            "Authenticate the card with 3-D Secure. A card that needs a challenge answers"
            " `requires_action` with `next_action`: send the shopper's browser to its `url`."
        ),
    )

    def to_domain(self) -> PaymentRequest:
        return PaymentRequest(
            pan=self.card.number,
            cvv=self.card.cvv,
            expiry_month=self.card.expiry_month,
            expiry_year=self.card.expiry_year,
            holder_name=self.card.holder_name,
            amount=self.amount,
            currency=self.currency,
            reference=self.reference,
            capture=self.capture,
            three_d_secure_return_url=(
                self.three_d_secure.return_url if self.three_d_secure is not None else None
            ),
        )


class CardOut(BaseModel):
    masked_number: str = Field(examples=["**** **** **** 4242"])
    last4: str
    brand: str
    expiry_month: int
    expiry_year: int


class ThreeDSecureOut(BaseModel):
    authentication_flow: Literal["challenge", "frictionless"] | None = Field(
        description="null: not enrolled, or not yet known"
    )
    result: Literal["authenticated", "failed", "not_enrolled"] | None = Field(
        description="null while the challenge awaits the shopper"
    )
    eci: str | None = Field(description='Electronic Commerce Indicator, e.g. "05"')
    version: str | None = Field(examples=["2.2.0"])


class NextAction(BaseModel):
    type: Literal["redirect_to_url"]
    url: str = Field(description="Send the shopper's browser here: the bank's challenge page")


class PaymentOut(BaseModel):
    """A payment as it stands now (the same shape for create, replay and read)."""

    id: str
    status: Literal[
        "init", "requires_action", "processing", "authorized", "succeeded", "failed", "canceled"
    ]
    code: str | None
    decline_reason: str | None
    amount: int
    currency: str
    reference: str | None
    tracking_id: str | None
    card: CardOut
    capture: bool = Field(description="false: authorized only, to capture or cancel")
    amount_captured: int
    amount_refunded: int = Field(description="By succeeded refunds")
    refunded: bool = Field(description="True once everything captured was refunded")
    cancellation_reason: Literal["requested_by_merchant", "expired"] | None
    three_d_secure: ThreeDSecureOut | None = Field(description="When asked for with a return_url")
    next_action: NextAction | None = Field(description="While `requires_action` only")
    created_at: datetime
    updated_at: datetime


class CaptureCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: Annotated[
        int | None,
        Field(
            strict=True,
            gt=0,
            le=MAX_AMOUNT,
            description="At most the authorized amount (the rest is released); default: all.",
        ),
    ] = None


class RefundCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: Annotated[
        int | None,
        Field(strict=True, gt=0, le=MAX_AMOUNT, description="Default: what is left to refund."),
    ] = None
    reason: RefundReason | None = None
    reference: Annotated[
        str | None,
        Field(strict=True, max_length=64, description="Your own reference, e.g. an RMA number."),
        AfterValidator(safe_text),
    ] = None

    @field_validator("reference")
    @classmethod
    def _no_card_number(cls, value: str | None) -> str | None:
        if value is not None and contains_card_number(value):
            raise PydanticCustomError("card_number_in_reference", "must not contain a card number")
        return value


class RefundOut(BaseModel):
    """A refund as it stands now."""

    id: str
    object: Literal["refund"]
    payment_id: str
    amount: int
    currency: str
    status: Literal["pending", "succeeded", "failed"]
    reason: RefundReason | None
    failure_reason: str | None
    reference: str | None
    created_at: datetime
    updated_at: datetime


class RefundList(BaseModel):
    object: Literal["list"]
    data: list[RefundOut]
    has_more: bool


class FieldProblem(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldProblem] | None = None


# --- listing -------------------------------------------------------------------------------

# RFC 3339 date-time, as JSON Schema's "date-time" format has it (T and Z in either case).
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$", re.ASCII
)
_UNIX_SECONDS = re.compile(r"^\d{1,12}$", re.ASCII)
# Bounds that hold on every engine (MySQL DATETIME ends with year 9999).
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


def _instant(value: Any) -> Any:
    """Unix seconds or an RFC 3339 date-time with an offset, as an aware UTC datetime."""
    text = value.strip() if isinstance(value, str) else value
    message = "must be unix seconds or an RFC 3339 date-time with an offset"
    try:
        if isinstance(text, str) and _UNIX_SECONDS.match(text):
            instant = _EARLIEST + timedelta(seconds=int(text))
        elif isinstance(text, str) and _RFC3339.match(text):
            instant = datetime.fromisoformat(text.upper()).astimezone(UTC)
        else:
            raise PydanticCustomError("datetime_parsing", message)
    except (ValueError, OverflowError):
        # An impossible date (February 30th, hour 25) or one beyond what datetime can hold.
        raise PydanticCustomError("datetime_parsing", message) from None
    if not _EARLIEST <= instant <= _LATEST:
        raise PydanticCustomError("datetime_range", "must be between 1970 and 9999")
    return instant


Instant = Annotated[
    datetime | None,
    BeforeValidator(_instant),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "format": "date-time"},
                {"type": "integer", "minimum": 0, "maximum": 253402300799},
            ],
            "examples": ["2026-11-25T00:00:00Z", 1795564800],
        }
    ),
]
_CURSOR_DESCRIPTION = (
    "A payment id from a previous page: the page of payments {direction} it (still newest "
    "first). An id that is not one of your payments is `404`. Not with `{other}`."
)
_BOUND_DESCRIPTION = "Only payments created {relation} this instant (unix seconds or RFC 3339)."
_PaymentId = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class PaymentListParams(BaseModel):
    """The query of ``GET /api/v1/payments``; any other parameter is refused."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(
        DEFAULT_LIMIT,
        ge=1,
        le=MAX_LIMIT,
        description=f"How many payments a page holds, 1 to {MAX_LIMIT}.",
        examples=[10],
    )
    starting_after: _PaymentId | None = Field(
        None,
        description=_CURSOR_DESCRIPTION.format(direction="older than", other="ending_before"),
        examples=["01965f2e-1c3a-7d4e-9b1a-2f0c3e4d5a6b"],
    )
    ending_before: _PaymentId | None = Field(
        None,
        description=_CURSOR_DESCRIPTION.format(direction="newer than", other="starting_after"),
    )
    status: PaymentStatus | None = Field(
        None, description="Only payments in this status.", examples=["succeeded"]
    )
    reference: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        None, description="Only payments with this `reference` (exact match).", examples=["order-1"]
    )
    created_gte: Instant = Field(
        None,
        alias="created[gte]",
        description=_BOUND_DESCRIPTION.format(relation="at or after"),
    )
    created_gt: Instant = Field(
        None,
        alias="created[gt]",
        description=_BOUND_DESCRIPTION.format(relation="after"),
    )
    created_lte: Instant = Field(
        None,
        alias="created[lte]",
        description=_BOUND_DESCRIPTION.format(relation="at or before"),
    )
    created_lt: Instant = Field(
        None,
        alias="created[lt]",
        description=_BOUND_DESCRIPTION.format(relation="before"),
    )

    def to_query(self) -> PaymentListQuery:
        return PaymentListQuery(
            limit=self.limit,
            starting_after=self.starting_after,
            ending_before=self.ending_before,
            filters=PaymentFilters(
                status=self.status,
                reference=self.reference,
                created_gte=self.created_gte,
                created_gt=self.created_gt,
                created_lte=self.created_lte,
                created_lt=self.created_lt,
            ),
        )


class PaymentList(BaseModel):
    """A page of your payments, newest first."""

    object: Literal["list"]
    data: list[PaymentOut]
    has_more: bool = Field(description="Whether more payments lie beyond this page, that way.")


def payment_list_document(page: PaymentPage) -> dict[str, Any]:
    """The page's JSON representation (shape of PaymentList)."""
    return {
        "object": "list",
        "data": [payment_document(payment) for payment in page.payments],
        "has_more": page.has_more,
    }
