"""Card data retention on real SQLite and MariaDB: old terminal cards erased, the rest kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from payment_gateway.service.retention import CardDataEraser, RetentionPolicy
from payment_gateway.storage.tables import cards, payments
from sqlalchemy import select, update

from .conftest import MERCHANT_ONE, Gateway, payment_body

RETENTION = timedelta(days=30)


async def pay(gateway: Gateway, number: str) -> dict[str, object]:
    response = await gateway.client.post(
        "/api/v1/payments", json=payment_body(number), headers=MERCHANT_ONE
    )
    assert response.status_code == 201
    created: dict[str, object] = response.json()
    return created


async def age(gateway: Gateway, payment_id: object, days: int) -> None:
    """Move a payment and its card back in time, as if made ``days`` ago."""
    when = datetime.now(UTC) - timedelta(days=days)
    async with gateway.app.state.services.uow.engine.begin() as connection:
        card_id = await connection.scalar(
            select(payments.c.card_id).where(payments.c.id == payment_id)
        )
        await connection.execute(
            update(payments).where(payments.c.id == payment_id).values(created_at=when)
        )
        await connection.execute(update(cards).where(cards.c.id == card_id).values(created_at=when))


async def stored_card(gateway: Gateway, payment_id: object) -> tuple[bytes, bytes | None, object]:
    statement = (
        select(cards.c.pan_encrypted, cards.c.holder_name_encrypted, cards.c.erased_at)
        .join(payments, payments.c.card_id == cards.c.id)
        .where(payments.c.id == payment_id)
    )
    async with gateway.app.state.services.uow.engine.connect() as connection:
        row = (await connection.execute(statement)).one()
    return row.pan_encrypted, row.holder_name_encrypted, row.erased_at


async def test_old_terminal_cards_are_erased_and_the_payment_still_reads(gateway: Gateway) -> None:
    old_succeeded = await pay(gateway, "4242424242424242")
    old_failed = await pay(gateway, "4000000000000002")
    old_processing = await pay(gateway, "4000000000009995")
    young_succeeded = await pay(gateway, "4242424242424242")
    for payment in (old_succeeded, old_failed, old_processing):
        await age(gateway, payment["id"], 31)
    await age(gateway, young_succeeded["id"], 29)

    eraser = CardDataEraser(gateway.app.state.services.uow, RetentionPolicy(RETENTION))
    assert await eraser.erase_expired() == 2

    for payment in (old_succeeded, old_failed):
        pan, holder, erased_at = await stored_card(gateway, payment["id"])
        assert (pan, holder) == (b"", None)
        assert erased_at is not None
        read = await gateway.client.get(f"/api/v1/payments/{payment['id']}", headers=MERCHANT_ONE)
        assert read.status_code == 200
        assert read.json()["card"] == payment["card"]  # masked number, last4, brand, expiry
        assert read.json()["status"] == payment["status"]
    for payment in (old_processing, young_succeeded):  # still open, or not old enough
        pan, holder, erased_at = await stored_card(gateway, payment["id"])
        assert pan
        assert holder
        assert erased_at is None
    assert await eraser.erase_expired() == 0
