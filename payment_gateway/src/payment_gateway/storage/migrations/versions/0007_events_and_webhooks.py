"""events and webhooks: the event outbox, webhook endpoints, deliveries and their attempts

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import payment_gateway.storage.tables

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DATETIME = payment_gateway.storage.tables.UTCDateTime
ID = sa.String(length=36)
PREFIXED_ID = sa.String(length=40)


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", PREFIXED_ID, nullable=False),
        sa.Column("merchant_id", ID, nullable=False),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("object_id", PREFIXED_ID, nullable=False),
        sa.Column("created_at", UTC_DATETIME(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("fanout_due_at", UTC_DATETIME(), nullable=True),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_events_merchant_id_merchants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    op.create_index(
        op.f("ix_events_merchant_id_created_at_id"), "events", ["merchant_id", "created_at", "id"]
    )
    op.create_index(
        op.f("ix_events_merchant_id_type_created_at_id"),
        "events",
        ["merchant_id", "type", "created_at", "id"],
    )
    op.create_index(op.f("ix_events_fanout_due_at"), "events", ["fanout_due_at"])
    op.create_index(op.f("ix_events_created_at"), "events", ["created_at"])

    op.create_table(
        "webhook_endpoints",
        sa.Column("id", PREFIXED_ID, nullable=False),
        sa.Column("merchant_id", ID, nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=True),
        sa.Column("enabled_events", sa.String(length=1024), nullable=False),
        sa.Column("secret_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column("previous_secret_encrypted", sa.LargeBinary(), nullable=True),
        sa.Column("previous_secret_expires_at", UTC_DATETIME(), nullable=True),
        sa.Column("disabled", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("disabled_reason", sa.String(length=64), nullable=True),
        sa.Column("failing_since", UTC_DATETIME(), nullable=True),
        sa.Column("created_at", UTC_DATETIME(), nullable=False),
        sa.Column("updated_at", UTC_DATETIME(), nullable=False),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchants.id"],
            name=op.f("fk_webhook_endpoints_merchant_id_merchants"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_endpoints")),
    )
    op.create_index(
        op.f("ix_webhook_endpoints_merchant_id"), "webhook_endpoints", ["merchant_id"]
    )

    op.create_table(
        "webhook_deliveries",
        sa.Column("id", ID, nullable=False),
        sa.Column("event_id", PREFIXED_ID, nullable=False),
        sa.Column("endpoint_id", PREFIXED_ID, nullable=False),
        sa.Column("merchant_id", ID, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", UTC_DATETIME(), nullable=False),
        sa.Column("updated_at", UTC_DATETIME(), nullable=False),
        sa.Column("next_attempt_at", UTC_DATETIME(), nullable=True),
        sa.ForeignKeyConstraint(
            ["event_id"], ["events.id"], name=op.f("fk_webhook_deliveries_event_id_events")
        ),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["webhook_endpoints.id"],
            name=op.f("fk_webhook_deliveries_endpoint_id_webhook_endpoints"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
        sa.UniqueConstraint(
            "event_id", "endpoint_id", name=op.f("uq_webhook_deliveries_event_id_endpoint_id")
        ),
    )
    op.create_index(
        op.f("ix_webhook_deliveries_endpoint_id_created_at"),
        "webhook_deliveries",
        ["endpoint_id", "created_at"],
    )
    op.create_index(
        op.f("ix_webhook_deliveries_next_attempt_at"), "webhook_deliveries", ["next_attempt_at"]
    )

    op.create_table(
        "webhook_attempts",
        sa.Column("id", ID, nullable=False),
        sa.Column("delivery_id", ID, nullable=False),
        sa.Column("attempted_at", UTC_DATETIME(), nullable=False),
        sa.Column("status_code", sa.SmallInteger(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(length=255), nullable=True),
        sa.Column("response_excerpt", sa.String(length=1024), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["webhook_deliveries.id"],
            name=op.f("fk_webhook_attempts_delivery_id_webhook_deliveries"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_attempts")),
    )
    op.create_index(
        op.f("ix_webhook_attempts_delivery_id"), "webhook_attempts", ["delivery_id"]
    )


def downgrade() -> None:
    op.drop_table("webhook_attempts")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_endpoints")
    op.drop_table("events")
