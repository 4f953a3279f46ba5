"""The group commit's writes on the driver itself (storage/bulk_writes.py), on MariaDB: they
commit and roll back with their unit of work, never leave a transaction open on a pooled
connection, and a connection lost under them is named as SQLAlchemy's path names it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, datetime

import pytest
from mariadb_server import MYSQL_SERVER_URL
from payment_gateway.domain.merchant import Merchant
from payment_gateway.service.errors import StorageUnavailable
from payment_gateway.service.ports import NewPayment
from payment_gateway.storage.database import create_engine
from payment_gateway.storage.tables import payments
from payment_gateway.storage.unit_of_work import SqlUnitOfWorkFactory
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from .test_group_commit import new_payment

pytestmark = pytest.mark.mariadb


class Boom(Exception):
    pass


@pytest.fixture
async def uow(mysql_url: str) -> AsyncIterator[SqlUnitOfWorkFactory]:
    # One connection in the transactional pool: every unit of work gets the same one, so
    # whatever a unit of work leaves on it, the next one finds.
    factory = SqlUnitOfWorkFactory(create_engine(mysql_url, pool_size=2))
    try:
        yield factory
    finally:
        await factory.dispose()


@pytest.fixture
async def merchant(uow: SqlUnitOfWorkFactory) -> Merchant:
    merchant = Merchant(str(uuid.uuid4()), f"bulk-writes-{uuid.uuid4().hex[:8]}")
    async with uow() as work:
        await work.merchants.add(merchant, datetime.now(UTC))
        await work.commit()
    return merchant


async def stored(mysql_url: str, batch: Sequence[NewPayment]) -> list[tuple[str, str, datetime]]:
    """The batch's payments as another client sees them (id, status, created_at)."""
    other = create_async_engine(mysql_url)
    ids = [new.payment.id for new in batch]
    statement = select(payments.c.id, payments.c.status, payments.c.created_at)
    try:
        async with other.connect() as connection:
            rows = await connection.execute(statement.where(payments.c.id.in_(ids)))
            return sorted((row.id, row.status, row.created_at) for row in rows)
    finally:
        await other.dispose()


async def write(
    uow: SqlUnitOfWorkFactory, batch: Sequence[NewPayment], *, then: Exception | None = None
) -> None:
    """Add the batch and commit, or raise ``then`` before committing."""
    async with uow() as work:
        await work.payments.add_many(batch)
        if then is not None:
            raise then
        await work.commit()


async def test_driver_writes_are_committed_with_their_unit_of_work(
    uow: SqlUnitOfWorkFactory, merchant: Merchant, mysql_url: str
) -> None:
    batch = [new_payment(merchant) for _ in range(3)]
    async with uow() as work:
        await work.payments.add_many(batch)
        assert await stored(mysql_url, batch) == []  # not before the commit
        await work.commit()

    # Read back through SQLAlchemy's UTCDateTime: the instant written, to the microsecond.
    expected = [(new.payment.id, "init", new.payment.created_at) for new in batch]
    assert await stored(mysql_url, batch) == sorted(expected)


async def test_driver_writes_left_uncommitted_are_rolled_back_not_inherited(
    uow: SqlUnitOfWorkFactory, merchant: Merchant, mysql_url: str
) -> None:
    abandoned = [new_payment(merchant) for _ in range(2)]
    failed = [new_payment(merchant) for _ in range(2)]
    async with uow() as work:
        await work.payments.add_many(abandoned)  # and leaves without committing
    with pytest.raises(Boom):
        await write(uow, failed, then=Boom())

    # The next unit of work on the same pooled connection commits only its own rows.
    committed = [new_payment(merchant)]
    await write(uow, committed)
    assert await stored(mysql_url, abandoned + failed) == []
    assert [row[0] for row in await stored(mysql_url, committed)] == [committed[0].payment.id]


async def connection_ids(uow: SqlUnitOfWorkFactory, count: int) -> list[int]:
    """Open ``count`` pooled connections at once; their server-side ids."""

    async def one() -> int:
        async with uow() as work:
            connection_id = await work.payments._connection.scalar(text("SELECT CONNECTION_ID()"))
            await asyncio.sleep(0.05)  # held, so that the others take connections of their own
        return int(connection_id)

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def kill(connection_ids: Iterable[int]) -> None:
    """Cut these connections on the server, as a restart or failover would."""
    admin = create_async_engine(MYSQL_SERVER_URL, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            for connection_id in connection_ids:
                await connection.execute(text(f"KILL {connection_id}"))
    finally:
        await admin.dispose()


async def test_a_connection_lost_under_driver_writes_is_unavailable_then_replaced(
    uow: SqlUnitOfWorkFactory, merchant: Merchant
) -> None:
    await kill(await connection_ids(uow, 1))

    batch = [new_payment(merchant)]
    with pytest.raises(StorageUnavailable):
        await write(uow, batch)
    async with uow() as work:  # a fresh connection: the batch may simply be written again
        await work.payments.add_many(batch)
        await work.commit()
        count = select(func.count()).select_from(payments)
        assert await work.payments._connection.scalar(
            count.where(payments.c.id == batch[0].payment.id)
        )


async def test_one_lost_connection_retires_the_pools_others(
    mysql_url: str, merchant: Merchant
) -> None:
    uow = SqlUnitOfWorkFactory(create_engine(mysql_url, pool_size=8))  # 4 in its pool
    try:
        await kill(await connection_ids(uow, 4))  # every pooled connection cut at once

        outcomes = []
        for _ in range(5):
            try:
                await write(uow, [new_payment(merchant)])
                outcomes.append("written")
            except StorageUnavailable:
                outcomes.append("unavailable")
    finally:
        await uow.dispose()
    # The first batch finds the cut; the pool's other connections go with its own, instead
    # of failing a batch each.
    assert outcomes == ["unavailable"] + ["written"] * 4
