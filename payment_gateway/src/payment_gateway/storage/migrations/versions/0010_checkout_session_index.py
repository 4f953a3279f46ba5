"""payments: the checkout session index keyed by the session alone

Revision ID: 0010
Revises: 0009

The index on (checkout_session_id, status) was rewritten by every status change of every
payment, API payments too (their key is (NULL, status)), though only the reads of a
checkout session and its expiry use it, for a session's few payments. Keyed by the session
alone, a status change leaves it untouched; those lookups read the session's rows for their
status.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        op.f("ix_payments_checkout_session_id"), "payments", ["checkout_session_id"]
    )
    op.drop_index(op.f("ix_payments_checkout_session_id_status"), table_name="payments")


def downgrade() -> None:
    op.create_index(
        op.f("ix_payments_checkout_session_id_status"),
        "payments",
        ["checkout_session_id", "status"],
    )
    op.drop_index(op.f("ix_payments_checkout_session_id"), table_name="payments")
