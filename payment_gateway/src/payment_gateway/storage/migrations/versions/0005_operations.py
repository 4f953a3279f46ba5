"""captures, voids and refunds: operations, and what a payment keeps of them

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import payment_gateway.storage.tables

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DATETIME = payment_gateway.storage.tables.UTCDateTime
ID = sa.String(length=36)
IDEMPOTENCY_KEY = sa.String(length=255).with_variant(
    sa.dialects.mysql.VARCHAR(255, collation="utf8mb4_bin"), "mysql"
)


def upgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.add_column(sa.Column("capture", sa.Boolean(), nullable=False, server_default=sa.true()))
        for name in ("amount_captured", "amount_refunded", "amount_refund_pending"):
            batch.add_column(sa.Column(name, sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("cancellation_reason", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("settlement_operation_id", ID, nullable=True))
    # Payments captured before this revision: everything they charged was captured.
    op.execute("UPDATE payments SET amount_captured = amount WHERE status = 'succeeded'")
    op.create_table(
        "operations",
        sa.Column("id", ID, nullable=False),
        sa.Column("payment_id", ID, nullable=False),
        sa.Column("merchant_id", ID, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.Column("reference", sa.String(length=64), nullable=True),
        sa.Column("failure_reason", sa.String(length=64), nullable=True),
        sa.Column("tracking_id", sa.String(length=64), nullable=True),
        sa.Column("idempotency_key", IDEMPOTENCY_KEY, nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=True),
        sa.Column("created_at", UTC_DATETIME(), nullable=False),
        sa.Column("updated_at", UTC_DATETIME(), nullable=False),
        sa.Column("next_attempt_at", UTC_DATETIME(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_operations_merchant_id_merchants")
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name=op.f("fk_operations_payment_id_payments")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operations")),
        sa.UniqueConstraint(
            "merchant_id",
            "kind",
            "idempotency_key",
            name=op.f("uq_operations_merchant_id_kind_idempotency_key"),
        ),
    )
    op.create_index(
        op.f("ix_operations_payment_id_created_at"), "operations", ["payment_id", "created_at"]
    )
    op.create_index(op.f("ix_operations_next_attempt_at"), "operations", ["next_attempt_at"])


def downgrade() -> None:
    op.drop_table("operations")
    with op.batch_alter_table("payments") as batch:
        for name in (
            "settlement_operation_id",
            "cancellation_reason",
            "amount_refund_pending",
            "amount_refunded",
            "amount_captured",
            "capture",
        ):
            batch.drop_column(name)
