"""payment listing: indexes for the status and reference filters

Revision ID: 0006
Revises: 0005

GET /api/v1/payments pages through a merchant's payments in (created_at, id) order. The
existing (merchant_id, created_at) index serves the unfiltered listing; these two serve it
filtered by status or by reference, so that a page stays a short index range however many
payments the merchant has. The primary key is named last so that SQLite, which does not
append it to a secondary index as InnoDB does, reads the same order too.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        op.f("ix_payments_merchant_id_status_created_at_id"),
        "payments",
        ["merchant_id", "status", "created_at", "id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_payments_merchant_id_reference_created_at_id"),
        "payments",
        ["merchant_id", "reference", "created_at", "id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_payments_merchant_id_reference_created_at_id"), table_name="payments")
    op.drop_index(op.f("ix_payments_merchant_id_status_created_at_id"), table_name="payments")
