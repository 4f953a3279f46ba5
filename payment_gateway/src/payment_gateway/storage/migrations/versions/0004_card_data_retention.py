"""card data retention: cards.erased_at and the index the retention job scans

Revision ID: 0004
Revises: 0003

The retention job (service/retention.py) empties the encrypted PAN and holder name of cards
whose payment is terminal and older than CARD_DATA_RETENTION_DAYS, and stamps erased_at. The
PAN column stays NOT NULL (an erased one is empty), so no table has to be rebuilt on SQLite.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import payment_gateway.storage.tables

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "cards",
        sa.Column("erased_at", payment_gateway.storage.tables.UTCDateTime(), nullable=True),
    )
    op.create_index(
        op.f("ix_cards_erased_at_created_at"), "cards", ["erased_at", "created_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_cards_erased_at_created_at"), table_name="cards")
    op.drop_column("cards", "erased_at")
