"""Request and response models of the bank simulator API."""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
)
from pydantic_core import PydanticCustomError

MAX_AMOUNT = 2**63 - 1  # fits a signed 64-bit column

# Patterns run on pydantic-core's Rust engine: ``$`` is end of text and ``[0-9]`` is ASCII.
CardNumber = Annotated[str, StringConstraints(pattern=r"^[0-9]{12,19}$")]
Expiry = Annotated[str, StringConstraints(pattern=r"^(0[1-9]|1[0-2])/[0-9]{4}$")]
Cvv = Annotated[str, StringConstraints(pattern=r"^[0-9]{3,4}$")]
# Control characters (Unicode Cc) and bidirectional formatting ones: a holder name must not
# be able to forge a log line or display as something other than what it is.
_UNSAFE_NAME_CHARACTERS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


def _safe_holder_name(value: str) -> str:
    if any(c in _UNSAFE_NAME_CHARACTERS or unicodedata.category(c) == "Cc" for c in value):
        raise PydanticCustomError(
            "unsafe_characters", "must not contain control or bidirectional formatting characters"
        )
    return value


HolderName = Annotated[str, StringConstraints(max_length=100), AfterValidator(_safe_holder_name)]
Reference = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Amount = Annotated[StrictInt, Field(gt=0, le=MAX_AMOUNT)]

MAX_URL_LENGTH = 2048
# A host as it may appear in a Content-Security-Policy source: a DNS name or an IP literal
# (``urlsplit`` gives an IPv6 one without its brackets).
_HOST = re.compile(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?|[0-9a-f:.]*:[0-9a-f:.]*")


def web_origin(url: str) -> str:
    """``scheme://host[:port]`` of an absolute http(s) URL; ``ValueError`` when it is not one.

    Built from the parsed parts, so it is safe to put into a Content-Security-Policy.
    """
    if len(url) > MAX_URL_LENGTH or any(c.isspace() or not c.isprintable() for c in url):
        raise ValueError("must be an absolute http or https URL")
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or "@" in parts.netloc or not _HOST.fullmatch(host):
        raise ValueError("must be an absolute http or https URL")
    port = parts.port  # ValueError when it is not a number from 0 to 65535
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def _http_url(value: str) -> str:
    try:
        web_origin(value)
    except ValueError:
        raise PydanticCustomError("url", "must be an absolute http or https URL") from None
    return value  # unchanged: the shopper is sent back to exactly this


HttpUrl = Annotated[str, AfterValidator(_http_url)]

# Friendlier messages than "String should match pattern '...'", by field path.
PATTERN_MESSAGES: dict[str, str] = {
    "card.number": "must be 12 to 19 digits",
    "card.expiry": "must be MM/YYYY",
    "card.cvv": "must be 3 or 4 digits",
    "currency": "must be 3 upper-case letters (ISO 4217)",
}


class Card(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    number: CardNumber = Field(examples=["4242424242424242"])
    expiry: Expiry = Field(examples=["12/2042"])
    cvv: Cvv | None = Field(
        default=None,
        examples=["123"],
        description="Required, except in a deposit that names its 3-D Secure authentication "
        "(the shopper proved to hold the card; the gateway keeps no CVV until then).",
    )
    holder_name: HolderName | None = Field(default=None, examples=["John Doe"])


class DepositRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    reference: Reference = Field(description="Caller's id for the deposit; de-duplicated on.")
    card: Card
    amount: Amount = Field(description="Minor units, JSON integer.", examples=[1000])
    currency: Currency = Field(examples=["USD"])
    capture: StrictBool = Field(
        default=True,
        description="false: only authorize (status authorized), to be captured or voided later.",
    )
    three_d_secure: ThreeDSecureReference | None = Field(
        default=None,
        description="Needed for a card enrolled in 3-D Secure (else declined "
        "authentication_required); ignored for any other card.",
    )


class ThreeDSecureReference(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    authentication_id: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(
        description="The id the bank gave the 3-D Secure authentication of this card and amount."
    )


class TransactionOut(BaseModel):
    transaction_id: str
    reference: str
    status: Literal["succeeded", "authorized", "voided", "failed", "pending"]
    code: Literal["0", "100", "200"]
    reason: str | None
    captured_amount: int = Field(description="Taken from the card; 0 until captured.")
    refunded_amount: int = Field(description="The sum of succeeded refunds.")


class OperationTarget(BaseModel):
    """What every capture, void and refund names: itself and its deposit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reference: Reference = Field(description="Caller's id for the operation; de-duplicated on.")
    deposit_reference: Reference = Field(description="The reference of the deposit.")


class OperationRequest(OperationTarget):
    """A capture or a refund of part or all of a deposit."""

    amount: Amount = Field(description="Minor units, JSON integer.", examples=[600])


class VoidRequest(OperationTarget):
    """A void always releases the whole authorization."""

    amount: Amount | None = Field(default=None, description="Accepted and ignored.")


class OperationOut(BaseModel):
    reference: str
    deposit_reference: str
    kind: Literal["capture", "void", "refund"]
    amount: int
    status: Literal["succeeded", "failed"]
    code: Literal["0", "100"]
    reason: str | None
    transaction_id: str
    created_at: str = Field(description="RFC 3339, UTC, with microseconds.")


class AuthenticationCard(BaseModel):
    """The card to authenticate: never its CVV."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    number: CardNumber = Field(examples=["4000000000003220"])
    expiry: Expiry = Field(examples=["12/2042"])
    holder_name: HolderName | None = Field(default=None, examples=["John Doe"])


class AuthenticationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    reference: Reference = Field(
        description="Caller's id for the authentication; de-duplicated on."
    )
    card: AuthenticationCard
    amount: Amount = Field(description="Minor units, JSON integer.", examples=[1000])
    currency: Currency = Field(examples=["EUR"])
    return_url: HttpUrl = Field(
        description="Where the shopper's browser is sent (303) once the challenge is answered.",
        examples=["https://gateway.example/3ds/return"],
        json_schema_extra={"format": "uri", "maxLength": MAX_URL_LENGTH},
    )


class AuthenticationOut(BaseModel):
    id: str = Field(description="The bank's id of the authentication; a deposit names it.")
    reference: str
    status: Literal["authenticated", "not_enrolled", "challenge_required", "failed"]
    flow: Literal["frictionless", "challenge"] | None
    challenge_url: str | None = Field(
        description="The challenge page, for the shopper's browser (challenge flow only)."
    )
    eci: Literal["05"] | None = Field(description='"05" once authenticated, else null.')
    version: Literal["2.2.0"]
    failure_reason: Literal["wrong_code", "canceled"] | None = Field(
        description="Why a failed authentication failed; else null."
    )


class FieldError(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """JSON schema of ``model`` with its ``$defs`` inlined (for ``openapi_extra``)."""
    schema = model.model_json_schema()
    defs: dict[str, Any] = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved
