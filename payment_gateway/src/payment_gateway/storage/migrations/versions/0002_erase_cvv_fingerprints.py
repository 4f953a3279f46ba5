"""erase idempotency fingerprints that covered the CVV

Revision ID: 0002
Revises: 0001

Fingerprints written before this revision were keyed hashes over the PAN *and the CVV*: with
the hash key and the card key, the CVV fell to a few thousand guesses. PCI DSS 3.3.1.2 forbids
keeping it in any form, so every stored fingerprint is erased. The idempotency claims stay:
a retry of such a key is answered as a replay of the payment it made (see the payment
service), and the claims expire with the idempotency TTL as before.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("UPDATE payments SET request_hash = NULL WHERE request_hash IS NOT NULL")


def downgrade() -> None:
    # Erased fingerprints cannot come back; there is nothing to undo.
    pass
