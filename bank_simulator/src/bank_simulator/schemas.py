"""Request and response models of the bank simulator API."""

from __future__ import annotations

import unicodedata
from typing import Annotated, Any, Literal

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
    cvv: Cvv = Field(examples=["123"])
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
