"""Group commit: payments that arrive together are recorded in one transaction.

Every payment must be committed before its bank call, and at a few hundred payments a second
most of that cost is per transaction, not per row: the INSERT round trips, the COMMIT and its
log flush, and the driver and SQLAlchemy work around each statement. The recorder keeps one
writer per process. A payment that arrives while the writer is busy joins the next batch; the
writer inserts the batch's cards and payments as two multi-row INSERTs and commits once, then
tells each waiting request that its own payment is durable. Nothing waits on a timer: alone, a
payment is written at once, exactly as without batching.

A batch fails as a whole. If it was an idempotency key already claimed, the batch's payments
are written again one by one, so only the request that reused a key hears about it.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from payment_gateway.observability import RECORD_BATCH_SIZE
from payment_gateway.service.errors import StorageUnavailable
from payment_gateway.service.ports import DuplicateIdempotencyKey, NewPayment
from payment_gateway.storage.unit_of_work import SqlUnitOfWorkFactory


@dataclass(slots=True)
class _Waiting:
    new: NewPayment
    done: asyncio.Future[None]


class GroupCommitRecorder:
    def __init__(self, uow: SqlUnitOfWorkFactory, *, max_batch: int = 100) -> None:
        self._uow = uow
        self._max_batch = max_batch
        self._queue: list[_Waiting] = []
        self._writer: asyncio.Task[None] | None = None

    async def record(self, new: NewPayment) -> None:
        done = asyncio.get_running_loop().create_future()
        self._queue.append(_Waiting(new, done))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_all())
        # If this request is cancelled, its payment may still be committed with the batch:
        # the same as a cancellation just after a commit, which the reconciler covers.
        await done

    async def _write_all(self) -> None:
        try:
            while self._queue:
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                await self._write(batch)
        finally:
            self._writer = None
            # Only a cancelled writer (shutdown) leaves payments queued: never leave them hanging.
            for waiting in self._queue:
                _settle(waiting.done, StorageUnavailable("the gateway is shutting down"))
            self._queue.clear()

    async def _write(self, batch: list[_Waiting]) -> None:
        RECORD_BATCH_SIZE.observe(len(batch))
        try:
            await self._insert([waiting.new for waiting in batch])
        except DuplicateIdempotencyKey as duplicate:
            if len(batch) == 1:
                _settle(batch[0].done, duplicate)
                return
            for waiting in batch:  # find whose key it was
                await self._write([waiting])
        except BaseException as error:  # every waiter hears it; the writer goes on
            for waiting in batch:
                _settle(waiting.done, error)
            if not isinstance(error, Exception):
                raise  # cancellation (shutdown) or an interpreter exit
        else:
            for waiting in batch:
                _settle(waiting.done, None)

    async def _insert(self, entries: list[NewPayment]) -> None:
        async with self._uow() as uow:
            await uow.payments.add_many(entries)
            await uow.commit()

    async def aclose(self) -> None:
        """Let the batch being written finish (its requests are waiting for it)."""
        if self._writer is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._writer)


def _settle(done: asyncio.Future[None], error: BaseException | None) -> None:
    if done.done():  # its request was cancelled
        return
    if error is None:
        done.set_result(None)
    elif isinstance(error, StorageUnavailable):
        # One exception object per waiter: each request raises (and logs) its own.
        done.set_exception(StorageUnavailable(error.detail))
    else:
        done.set_exception(error)
