"""Table definitions (SQLAlchemy Core). The domain never sees these."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

# Stable constraint names keep Alembic migrations identical across engines.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored as naive UTC with microseconds, read back timezone-aware."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "mysql":
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous: pass an aware UTC datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


ID = String(36)
# Idempotency keys compare byte for byte: MySQL's default collations ignore case and accents,
# which would make "order-abc" and "ORDER-ABC" the same key.
IDEMPOTENCY_KEY = String(255).with_variant(mysql.VARCHAR(255, collation="utf8mb4_bin"), "mysql")

merchants = Table(
    "merchants",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("created_at", UTCDateTime(), nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", ID, primary_key=True),
    Column("merchant_id", ID, ForeignKey("merchants.id"), nullable=False, index=True),
    # SHA-256 of the key: the key itself is shown once at creation and never stored.
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime(), nullable=True),
)

cards = Table(
    "cards",
    metadata,
    Column("id", ID, primary_key=True),
    Column("merchant_id", ID, ForeignKey("merchants.id"), nullable=False, index=True),
    # Fernet tokens; there is deliberately no column for the CVV.
    Column("pan_encrypted", LargeBinary(), nullable=False),
    Column("holder_name_encrypted", LargeBinary(), nullable=True),
    # Only for cards of 15+ digits: with a short PAN, BIN and last four would give it away.
    Column("bin", String(8), nullable=True),
    Column("last4", String(4), nullable=False),
    Column("brand", String(16), nullable=False),
    Column("expiry_month", SmallInteger(), nullable=False),
    Column("expiry_year", SmallInteger(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    # When the retention job emptied pan_encrypted and holder_name_encrypted (NULL: kept).
    Column("erased_at", UTCDateTime(), nullable=True),
    # The retention job's range scan reads only cards not yet erased, oldest first.
    Index(None, "erased_at", "created_at"),
)

payments = Table(
    "payments",
    metadata,
    Column("id", ID, primary_key=True),
    Column("merchant_id", ID, ForeignKey("merchants.id"), nullable=False),
    Column("card_id", ID, ForeignKey("cards.id"), nullable=False, index=True),
    Column("status", String(16), nullable=False),
    Column("amount", BigInteger(), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("reference", String(64), nullable=True),
    Column("code", String(16), nullable=True),
    Column("decline_reason", String(64), nullable=True),
    Column("tracking_id", String(64), nullable=True),
    # Idempotency claim: unique per merchant, cleared once the key expires.
    Column("idempotency_key", IDEMPOTENCY_KEY, nullable=True),
    Column("request_hash", String(64), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    # Reconciliation bookkeeping: when the reconciler may next look, and how often it has.
    Column("next_attempt_at", UTCDateTime(), nullable=True),
    Column("attempts", Integer(), nullable=False, server_default="0"),
    # After the charge (docs/design.md, Capture and refunds): `capture` false authorizes only.
    Column("capture", Boolean(), nullable=False, server_default=true()),
    Column("amount_captured", BigInteger(), nullable=False, server_default="0"),
    Column("amount_refunded", BigInteger(), nullable=False, server_default="0"),
    # Refunds sent but not yet settled: they count against what is left to refund.
    Column("amount_refund_pending", BigInteger(), nullable=False, server_default="0"),
    Column("cancellation_reason", String(32), nullable=True),
    # The capture or void under way: one at a time, claimed by a guarded UPDATE.
    Column("settlement_operation_id", ID, nullable=True),
    # Asked for with a return_url: the authentication as far as it went (domain/three_d_secure).
    Column("three_d_secure", JSON(none_as_null=True), nullable=True),
    # The checkout session (hosted page) the payment was made for; NULL for API payments.
    Column("checkout_session_id", String(40), nullable=True),
    UniqueConstraint("merchant_id", "idempotency_key"),
    # The payment listing's order: InnoDB appends the primary key to a secondary index, so
    # this one is ordered by (created_at, id) within a merchant.
    Index(None, "merchant_id", "created_at"),
    # The listing filtered by status or by reference: the same order within each value, so a
    # rare status or one order's payments are a short range too, not a scan of the merchant.
    Index(None, "merchant_id", "status", "created_at", "id"),
    Index(None, "merchant_id", "reference", "created_at", "id"),
    # Only open payments have a next_attempt_at, so the reconciler's range scan over this
    # index reads (and, with FOR UPDATE, locks) just the due rows it takes, in order.
    Index(None, "next_attempt_at"),
    Index(None, "created_at"),
    # A session's payments: whether one is still pending (expiry waits for it). Not keyed by
    # status too: every status change of every payment would rewrite its entry (0010).
    Index(None, "checkout_session_id"),
)

# One row per secret that data is written under: a value that only the same secret
# reproduces (never the secret itself), so a process started with another refuses to start.
key_checks = Table(
    "key_checks",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("check_value", LargeBinary(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)


# Captures, voids and refunds: each the bank's de-duplication reference (its id), written
# `pending` before the bank call, as payments are.
operations = Table(
    "operations",
    metadata,
    Column("id", ID, primary_key=True),
    Column("payment_id", ID, ForeignKey("payments.id"), nullable=False),
    Column("merchant_id", ID, ForeignKey("merchants.id"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("amount", BigInteger(), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("reason", String(32), nullable=True),
    Column("reference", String(64), nullable=True),
    Column("failure_reason", String(64), nullable=True),
    Column("tracking_id", String(64), nullable=True),
    # Idempotency claim, per merchant and kind of operation.
    Column("idempotency_key", IDEMPOTENCY_KEY, nullable=True),
    Column("request_hash", String(64), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("next_attempt_at", UTCDateTime(), nullable=True),
    Column("attempts", Integer(), nullable=False, server_default="0"),
    UniqueConstraint("merchant_id", "kind", "idempotency_key"),
    Index(None, "payment_id", "created_at"),
    Index(None, "next_attempt_at"),
)


# The event outbox (docs/design.md, Events and webhooks): each row written in the transaction
# of the state change it tells of, with the exact bytes every delivery sends and signs.
events = Table(
    "events",
    metadata,
    Column("id", String(40), primary_key=True),  # evt_ + a UUIDv7: ordered by creation
    Column("merchant_id", ID, ForeignKey("merchants.id"), nullable=False),
    Column("type", String(40), nullable=False),
    Column("object_id", String(40), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("body", LargeBinary(), nullable=False),
    # Set while the event still has to be handed to the merchant's endpoints; NULL after.
    Column("fanout_due_at", UTCDateTime(), nullable=True),
    # The events listing, newest first, and its type filter: ranges of the merchant's rows.
    Index(None, "merchant_id", "created_at", "id"),
    Index(None, "merchant_id", "type", "created_at", "id"),
    Index(None, "fanout_due_at"),
    Index(None, "created_at"),  # retention
)

webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", String(40), primary_key=True),  # we_ + a UUIDv7
    Column("merchant_id", ID, ForeignKey("merchants.id"), nullable=False, index=True),
    Column("url", String(2048), nullable=False),
    Column("description", String(255), nullable=True),
    Column("enabled_events", String(1024), nullable=False),  # JSON list of types, or ["*"]
    # Signing secrets, encrypted under CARD_ENCRYPTION_KEYS: they must be read back to sign.
    Column("secret_encrypted", LargeBinary(), nullable=False),
    # After a rotation the old secret keeps signing beside the new one until it expires.
    Column("previous_secret_encrypted", LargeBinary(), nullable=True),
    Column("previous_secret_expires_at", UTCDateTime(), nullable=True),
    Column("disabled", Boolean(), nullable=False, server_default=false()),
    Column("disabled_reason", String(64), nullable=True),
    # When the unbroken run of failed attempts began (NULL: the last attempt was delivered).
    Column("failing_since", UTCDateTime(), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

# One row per (event, endpoint): what has to reach that endpoint, and when to try next.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", ID, primary_key=True),
    Column("event_id", String(40), ForeignKey("events.id"), nullable=False),
    Column("endpoint_id", String(40), ForeignKey("webhook_endpoints.id"), nullable=False),
    Column("merchant_id", ID, nullable=False),
    Column("status", String(16), nullable=False),  # pending, delivered, failed
    Column("attempts", Integer(), nullable=False, server_default="0"),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    # Pending only: when a worker may send it (next); NULL once delivered or failed.
    Column("next_attempt_at", UTCDateTime(), nullable=True),
    UniqueConstraint("event_id", "endpoint_id"),  # an event is fanned out to an endpoint once
    Index(None, "endpoint_id", "created_at"),
    Index(None, "next_attempt_at"),
)

# Every attempt to send a delivery, as the merchant sees them in the deliveries list.
webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("id", ID, primary_key=True),
    Column("delivery_id", ID, ForeignKey("webhook_deliveries.id"), nullable=False, index=True),
    Column("attempted_at", UTCDateTime(), nullable=False),
    Column("status_code", SmallInteger(), nullable=True),
    Column("duration_ms", Integer(), nullable=False),
    Column("error", String(255), nullable=True),
    Column("response_excerpt", String(1024), nullable=True),
)


# Checkout sessions (docs/design.md, Hosted payment page): what the hosted page charges, and
# where it sends the shopper back. The card data stays with the payments it makes.
checkout_sessions = Table(
    "checkout_sessions",
    metadata,
    Column("id", String(40), primary_key=True),  # cs_ + a UUIDv7
    Column("merchant_id", ID, ForeignKey("merchants.id"), nullable=False),
    Column("status", String(16), nullable=False),  # open, complete, expired
    Column("payment_status", String(16), nullable=False),  # unpaid, paid
    Column("amount", BigInteger(), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("reference", String(64), nullable=True),
    Column("success_url", String(2048), nullable=False),
    Column("cancel_url", String(2048), nullable=False),
    Column("capture", Boolean(), nullable=False, server_default=true()),
    Column("url", String(2048), nullable=False),  # the hosted page, under PUBLIC_URL
    Column("payment_id", ID, nullable=True),  # the latest payment made for it
    Column("declines", SmallInteger(), nullable=False, server_default="0"),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    # The expiry job's range: open sessions, soonest expiry first.
    Index(None, "status", "expires_at"),
    Index(None, "merchant_id", "created_at"),
)
