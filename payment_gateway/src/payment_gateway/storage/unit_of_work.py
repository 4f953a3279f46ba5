"""One database transaction per command: the repositories share its connection."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from payment_gateway.storage.database import READ_ONLY
from payment_gateway.storage.repositories import SqlMerchantRepository, SqlPaymentRepository


class SqlUnitOfWork:
    payments: SqlPaymentRepository
    merchants: SqlMerchantRepository

    def __init__(self, engine: AsyncEngine, *, read_only: bool = False) -> None:
        self._engine = engine
        self._read_only = read_only
        self._connection: AsyncConnection | None = None

    async def __aenter__(self) -> Self:
        connection = await self._engine.connect()
        if self._read_only:
            connection = await connection.execution_options(**{READ_ONLY: True})
        await connection.begin()
        self._connection = connection
        self.payments = SqlPaymentRepository(connection)
        self.merchants = SqlMerchantRepository(connection)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        connection = self._connection
        self._connection = None
        if connection is None:
            return
        try:
            if connection.in_transaction():
                await connection.rollback()
        finally:
            await connection.close()

    async def commit(self) -> None:
        assert self._connection is not None, "commit outside the unit of work"
        await self._connection.commit()

    async def rollback(self) -> None:
        assert self._connection is not None, "rollback outside the unit of work"
        await self._connection.rollback()


class SqlUnitOfWorkFactory:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    def __call__(self, *, read_only: bool = False) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.engine, read_only=read_only)
