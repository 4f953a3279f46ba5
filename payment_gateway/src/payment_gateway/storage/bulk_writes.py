"""The group commit's writes, run on the database driver's own connection (asyncmy).

Every payment is written twice in a group-committed batch: its row with its card, then its
outcome with its event. Through SQLAlchemy's execution layer each of those statements costs a
greenlet hop, a compiled-cache lookup, per-row parameter processing and a result object, and
the COMMIT another hop: on MariaDB a transaction of two INSERTs and its COMMIT took 0.57-0.84
ms of CPU that way against 0.31-0.40 ms on the driver itself (docs/design.md, Group commit).
So on asyncmy a unit of work's many-row statements go to the driver: SQLAlchemy still
compiles each one, once, from the same table definitions, and the columns' types still bind
the values; the driver's errors are raised as SQLAlchemy's own (a disconnect invalidates the
connection and lets the pool's others go), so every caller handles them as before.
SQLAlchemy's execution events and echo do not see these statements. Other drivers
(aiosqlite) keep SQLAlchemy's path."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.expression import UpdateBase

from payment_gateway.service.errors import StorageUnavailable

NATIVE_DRIVER = "asyncmy"

Processor = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class _Parameter:
    name: str
    from_row: bool  # else the statement's own value (an UPDATE's new status, say)
    processor: Processor | None  # a row's value's; the statement's own is bound already
    value: Any = None  # the statement's own, bound


@dataclass(frozen=True, slots=True)
class DriverStatement:
    """A statement compiled once for the driver: its SQL and how a row of values binds."""

    sql: str
    parameters: tuple[_Parameter, ...]

    def bind(self, rows: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
        return [
            tuple(
                (row[p.name] if p.processor is None else p.processor(row[p.name]))
                if p.from_row
                else p.value
                for p in self.parameters
            )
            for row in rows
        ]


@functools.lru_cache(maxsize=256)
def driver_statement(
    statement: UpdateBase, dialect: Dialect, row_keys: frozenset[str]
) -> DriverStatement:
    """``statement`` compiled for ``dialect`` with rows of ``row_keys``, as SQLAlchemy would
    for an executemany; a statement needing more of SQLAlchemy's execution is refused."""
    compiled = statement.compile(dialect=dialect, column_keys=sorted(row_keys))
    names = compiled.positiontup
    if (
        names is None
        or compiled.insert_prefetch
        or compiled.update_prefetch
        or compiled.literal_execute_params
        or compiled.post_compile_params
        or compiled.escaped_bind_names
    ):
        raise ValueError(f"not a plain positional statement: {compiled.string}")
    parameters = []
    for name in names:
        bind = compiled.binds[name]
        if name not in row_keys and bind.required:
            raise ValueError(f"no value for parameter {name!r} of {compiled.string}")
        processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if name in row_keys:
            parameters.append(_Parameter(name, True, processor))
        else:  # bound once here, not again for every row
            value = bind.effective_value
            parameters.append(
                _Parameter(name, False, None, processor(value) if processor else value)
            )
    return DriverStatement(compiled.string, tuple(parameters))


class BulkWriter:
    """Runs a unit of work's many-row statements: on the driver where it can, else through
    SQLAlchemy. Statements run on the driver are committed or rolled back there too."""

    def __init__(self, connection: AsyncConnection, *, autocommit: bool = False) -> None:
        self._connection = connection
        self._native = connection.dialect.driver == NATIVE_DRIVER
        self._autocommit = autocommit
        self._driver: Any = None  # the driver's connection, once a statement ran on it
        self.in_transaction = False  # statements ran on the driver since the last end

    async def execute_many(self, statement: UpdateBase, rows: Sequence[Mapping[str, Any]]) -> int:
        """Run ``statement`` once per row (one round trip where the driver batches them);
        the number of rows it matched."""
        if not rows:
            return 0
        if not self._native:
            return (await self._connection.execute(statement, list(rows))).rowcount
        compiled = driver_statement(statement, self._connection.dialect, frozenset(rows[0]))
        values = compiled.bind(rows)
        driver = await self._driver_connection()
        self.in_transaction = not self._autocommit
        try:
            async with driver.cursor() as cursor:
                return int(await cursor.executemany(compiled.sql, values))
        except BaseException as error:
            await self._raise_translated(error, compiled.sql)
            raise

    async def commit(self) -> None:
        if not self.in_transaction:
            return
        try:
            await self._driver.commit()
        except BaseException as error:  # still in the transaction: the unit of work rolls back
            await self._raise_translated(error, "COMMIT")
            raise
        self.in_transaction = False

    async def rollback(self) -> None:
        """Undo what ran on the driver. A connection that cannot be rolled back is dropped,
        never handed to the next unit of work with its transaction open."""
        if not self.in_transaction:
            return
        self.in_transaction = False
        if self._connection.invalidated:
            return  # closed already: the server rolled the transaction back
        try:
            await self._driver.rollback()
        except BaseException as error:
            with contextlib.suppress(Exception):
                await self._connection.invalidate()
            await self._raise_translated(error, "ROLLBACK")
            raise

    def ended(self) -> None:
        """The transaction was ended through SQLAlchemy (it commits the driver's work too)."""
        self.in_transaction = False

    async def _driver_connection(self) -> Any:
        if self._driver is None:
            self._driver = (await self._connection.get_raw_connection()).driver_connection
        return self._driver

    async def _raise_translated(self, error: BaseException, sql: str) -> None:
        """Raise the driver's error as SQLAlchemy would have; return for a cancellation,
        which the caller re-raises as it is."""
        dialect = self._connection.dialect
        driver_error = dialect.loaded_dbapi.Error
        if isinstance(error, driver_error):
            disconnect = dialect.is_disconnect(error, None, None)
            if disconnect:
                await self._lost(error)
            raise DBAPIError.instance(
                sql, None, error, driver_error, connection_invalidated=disconnect, dialect=dialect
            ) from error
        if isinstance(error, (OSError, AttributeError)):
            # AttributeError: asyncmy's on a socket gone under it (SQLAlchemy's adapter, too,
            # reads it as "network operation failed").
            await self._lost(error)
            raise StorageUnavailable("the database connection was lost") from error
        # Cancelled, or the driver failed mid-exchange: the connection's state is unknown.
        if not self._connection.invalidated:
            with contextlib.suppress(Exception):
                await self._connection.invalidate()

    async def _lost(self, error: BaseException) -> None:
        """A lost connection: this one is dropped, and, as SQLAlchemy does on a disconnect,
        so are the pool's others, which a restart or failover has most likely cut as well
        (each would otherwise fail a batch of its own before it is found out)."""
        if not self._connection.invalidated:
            with contextlib.suppress(Exception):
                await self._connection.invalidate(error)
        with contextlib.suppress(Exception):
            await self._connection.engine.dispose()
