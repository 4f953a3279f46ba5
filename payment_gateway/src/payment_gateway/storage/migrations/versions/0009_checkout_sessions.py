"""checkout sessions (the hosted payment page), and the session a payment was made for

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import payment_gateway.storage.tables

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DATETIME = payment_gateway.storage.tables.UTCDateTime
ID = sa.String(length=36)
PREFIXED_ID = sa.String(length=40)


def upgrade() -> None:
    op.create_table(
        "checkout_sessions",
        sa.Column("id", PREFIXED_ID, nullable=False),
        sa.Column("merchant_id", ID, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("payment_status", sa.String(length=16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("reference", sa.String(length=64), nullable=True),
        sa.Column("success_url", sa.String(length=2048), nullable=False),
        sa.Column("cancel_url", sa.String(length=2048), nullable=False),
        sa.Column("capture", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("payment_id", ID, nullable=True),
        sa.Column("declines", sa.SmallInteger(), server_default="0", nullable=False),
        sa.Column("created_at", UTC_DATETIME(), nullable=False),
        sa.Column("updated_at", UTC_DATETIME(), nullable=False),
        sa.Column("expires_at", UTC_DATETIME(), nullable=False),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_checkout_sessions_merchant_id_merchants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkout_sessions")),
    )
    op.create_index(
        op.f("ix_checkout_sessions_status_expires_at"),
        "checkout_sessions",
        ["status", "expires_at"],
    )
    op.create_index(
        op.f("ix_checkout_sessions_merchant_id_created_at"),
        "checkout_sessions",
        ["merchant_id", "created_at"],
    )
    with op.batch_alter_table("payments") as batch:
        batch.add_column(sa.Column("checkout_session_id", PREFIXED_ID, nullable=True))
    op.create_index(
        op.f("ix_payments_checkout_session_id_status"),
        "payments",
        ["checkout_session_id", "status"],
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_payments_checkout_session_id_status"), table_name="payments")
    with op.batch_alter_table("payments") as batch:
        batch.drop_column("checkout_session_id")
    # The table's indexes go with it: MariaDB refuses to drop the merchant_id one alone, as
    # the foreign key to merchants needs it.
    op.drop_table("checkout_sessions")
