"""One database transaction per command: the repositories share its connection."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from payment_gateway.service.errors import StorageContention, StorageUnavailable
from payment_gateway.storage.bulk_writes import BulkWriter
from payment_gateway.storage.checkout import SqlCheckoutSessionRepository
from payment_gateway.storage.database import (
    NODE_NOT_READY,
    READ_ONLY,
    autocommit_engine,
    error_code,
    rolled_back_by_contention,
)
from payment_gateway.storage.repositories import (
    SqlCardRepository,
    SqlMerchantRepository,
    SqlOperationRepository,
    SqlPaymentRepository,
)
from payment_gateway.storage.webhooks import SqlEventRepository, SqlWebhookRepository


class SqlUnitOfWork:
    """A transaction, or, for a single statement, an autocommit connection.

    A lone statement commits by itself, which saves the COMMIT (or ROLLBACK) round trip that
    wrapping it in a transaction would cost: that is most of the price of a short write.
    """

    payments: SqlPaymentRepository
    merchants: SqlMerchantRepository
    cards: SqlCardRepository
    operations: SqlOperationRepository
    events: SqlEventRepository
    webhooks: SqlWebhookRepository
    checkout_sessions: SqlCheckoutSessionRepository

    def __init__(
        self, engine: AsyncEngine, *, read_only: bool = False, autocommit: bool = False
    ) -> None:
        self._engine = engine
        self._read_only = read_only
        self._autocommit = autocommit
        self._connection: AsyncConnection | None = None
        self._bulk: BulkWriter | None = None

    async def __aenter__(self) -> Self:
        try:
            connection = await self._engine.connect()
        except (DBAPIError, OSError, PoolTimeout) as exc:
            # PoolTimeout: every pooled connection stayed busy for pool_timeout seconds.
            raise StorageUnavailable("the database cannot be reached") from exc
        if self._read_only:
            connection = await connection.execution_options(**{READ_ONLY: True})
        self._connection = connection
        self._bulk = bulk = BulkWriter(connection, autocommit=self._autocommit)
        self.payments = SqlPaymentRepository(connection, bulk)
        self.merchants = SqlMerchantRepository(connection)
        self.cards = SqlCardRepository(connection)
        self.operations = SqlOperationRepository(connection)
        self.events = SqlEventRepository(bulk)
        self.webhooks = SqlWebhookRepository(connection)
        self.checkout_sessions = SqlCheckoutSessionRepository(connection)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        connection, bulk = self._connection, self._bulk
        self._connection = self._bulk = None
        if connection is None:
            return
        try:
            if connection.in_transaction():
                await connection.rollback()  # the bulk writer's statements with the rest
            elif bulk is not None:
                await bulk.rollback()
        except DBAPIError as rollback_error:
            if exc is None:
                if rollback_error.connection_invalidated:
                    raise StorageUnavailable("the database connection was lost") from None
                raise
        finally:
            await connection.close()
        if isinstance(exc, DBAPIError) and exc.connection_invalidated:
            # A dropped connection (server restart, failover, idle kill): the statement did
            # not complete, and the caller may try again on a fresh connection.
            raise StorageUnavailable("the database connection was lost") from exc
        if isinstance(exc, DBAPIError) and rolled_back_by_contention(exc):
            raise StorageContention("the database is busy; the work was rolled back") from exc
        if isinstance(exc, DBAPIError) and error_code(exc) == NODE_NOT_READY:
            raise StorageUnavailable("the database node is not serving its cluster") from exc

    async def commit(self) -> None:
        assert self._connection is not None, "commit outside the unit of work"
        assert self._bulk is not None
        # In autocommit mode the server committed each statement as it ran.
        if self._autocommit:
            return
        if self._connection.in_transaction():
            await self._connection.commit()  # the bulk writer's statements with the rest
            self._bulk.ended()
        else:
            await self._bulk.commit()  # only the bulk writer wrote: commit on the driver


class SqlUnitOfWorkFactory:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._autocommit = autocommit_engine(engine)

    def __call__(self, *, read_only: bool = False, single_statement: bool = False) -> SqlUnitOfWork:
        if single_statement:
            return SqlUnitOfWork(self._autocommit, read_only=read_only, autocommit=True)
        return SqlUnitOfWork(self.engine, read_only=read_only)

    async def ping(self) -> None:
        """Raise StorageUnavailable unless the database answers a trivial query."""
        try:
            async with self._autocommit.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except (DBAPIError, OSError, PoolTimeout) as exc:
            raise StorageUnavailable("the database is unreachable") from exc

    async def dispose(self) -> None:
        if self._autocommit is not self.engine:
            await self._autocommit.dispose()
        await self.engine.dispose()
