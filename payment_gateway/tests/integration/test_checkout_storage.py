"""The checkout session repository on real SQLite and MariaDB: its guarded moves, and the
expiry claim on replicas that run at once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from payment_gateway.domain.checkout import CheckoutSession, CheckoutStatus
from payment_gateway.service.recording import TransactionalRecorder
from payment_gateway.storage.database import create_engine
from payment_gateway.storage.tables import checkout_sessions, events, merchants
from payment_gateway.storage.unit_of_work import SqlUnitOfWorkFactory
from sqlalchemy import func, select

from .conftest import Gateway


def new_session(session_id: str, merchant_id: str, expires_at: datetime) -> CheckoutSession:
    now = datetime.now(UTC)
    return CheckoutSession(
        id=session_id,
        merchant_id=merchant_id,
        status=CheckoutStatus.OPEN,
        amount=500,
        currency="USD",
        reference=None,
        success_url="https://shop.example/ok",
        cancel_url="https://shop.example/cart",
        capture=True,
        url=f"https://pay.example/checkout/{session_id}",
        created_at=now,
        updated_at=now,
        expires_at=expires_at,
    )


async def test_the_guarded_moves(gateway: Gateway) -> None:
    uow_factory = gateway.app.state.services.uow
    merchant = await gateway.app.state.services.merchants.authenticate("first_merchant_mock_token")
    now = datetime.now(UTC)
    async with uow_factory() as uow:
        sessions = uow.checkout_sessions
        await sessions.add(new_session("cs_guarded", merchant.id, now + timedelta(hours=1)))
        assert await sessions.count_decline("cs_guarded", "p-1", now) == 1
        assert await sessions.count_decline("cs_guarded", "p-2", now) == 2
        assert await sessions.expire("cs_guarded", now)
        assert not await sessions.expire("cs_guarded", now)  # once
        assert await sessions.count_decline("cs_guarded", "p-3", now) is None  # not open
        # A payment that succeeded completes the session even past its expiry.
        assert await sessions.complete("cs_guarded", "p-4", True, now)
        assert not await sessions.complete("cs_guarded", "p-4", True, now)
        read = await sessions.get("cs_guarded", merchant.id)
        await uow.commit()
    assert read is not None
    assert (read.status, read.payment_id, read.declines) == (CheckoutStatus.COMPLETE, "p-4", 2)
    assert read.merchant_name == "merchant_one"
    assert not read.payment_pending
    async with uow_factory(read_only=True) as uow:
        assert await uow.checkout_sessions.get("cs_guarded", "another-merchant") is None
        assert [s.id for s in await uow.checkout_sessions.get_many(["cs_guarded"])] == [
            "cs_guarded"
        ]


@pytest.mark.mariadb
async def test_replicas_expire_disjoint_sessions_each_once(mysql_url: str) -> None:
    engine = create_engine(mysql_url, pool_size=6)
    uow_factory = SqlUnitOfWorkFactory(engine)
    recorder = TransactionalRecorder(uow_factory)
    merchant_id = "merchant-expiry-test"
    past = datetime.now(UTC) - timedelta(seconds=1)
    ids = [f"cs_expiry_{i:03d}" for i in range(30)]
    try:
        async with engine.begin() as connection:
            await connection.execute(
                merchants.insert(),
                {"id": merchant_id, "name": merchant_id, "created_at": datetime.now(UTC)},
            )
        async with uow_factory() as uow:
            for session_id in ids:
                await uow.checkout_sessions.add(new_session(session_id, merchant_id, past))
            await uow.commit()

        counts = await asyncio.gather(
            *(recorder.expire_due_checkout_sessions(datetime.now(UTC), 12) for _ in range(4))
        )

        async with engine.connect() as connection:
            expired = await connection.scalar(
                select(func.count())
                .select_from(checkout_sessions)
                .where(checkout_sessions.c.merchant_id == merchant_id)
                .where(checkout_sessions.c.status == "expired")
            )
            told = await connection.scalar(
                select(func.count()).select_from(events).where(events.c.object_id.in_(ids))
            )
        assert sum(counts) == expired == told == len(ids)
    finally:
        async with engine.begin() as connection:
            await connection.execute(events.delete().where(events.c.object_id.in_(ids)))
            await connection.execute(
                checkout_sessions.delete().where(checkout_sessions.c.merchant_id == merchant_id)
            )
            await connection.execute(merchants.delete().where(merchants.c.id == merchant_id))
        await engine.dispose()
