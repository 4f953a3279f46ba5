"""Group commit: payments that arrive together are written in one transaction.

At a few hundred payments a second most of the cost of a write is per transaction, not per
row: the round trips, the COMMIT and its log flush, and the driver and SQLAlchemy work around
each statement. So each kind of write has one writer per process. A write that arrives while
the writer is busy joins the next batch; the writer runs the batch in one transaction, then
tells each waiting request what happened to its own payment. Nothing waits on a timer: alone,
a write goes out at once, as it would without batching.

- New payments: the batch's cards and payments go in as two multi-row INSERTs and one COMMIT.
  Each request still waits for that commit before its bank call. If a batch fails on an
  idempotency key already claimed, its payments are written again one by one, so only the
  request that reused a key hears about it.
- Outcomes (the status after the bank call): one guarded UPDATE per payment, sent together,
  and one COMMIT. If any payment's status no longer allowed its transition (the reconciler got
  there first), or the batch fails, it is rolled back and each outcome is written on its own,
  so every request learns whether its own transition applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from payment_gateway.observability import RECORD_BATCH_SIZE
from payment_gateway.service.errors import StorageUnavailable
from payment_gateway.service.ports import DuplicateIdempotencyKey, NewPayment, Outcome
from payment_gateway.storage.unit_of_work import SqlUnitOfWorkFactory

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass(slots=True)
class _Waiting(Generic[Item, Result]):
    item: Item
    done: asyncio.Future[Result]


class _Batcher(Generic[Item, Result]):
    """Queues items; one task at a time writes everything queued so far, as one batch.

    ``write`` returns one result (or exception) per item, in order.
    """

    def __init__(
        self,
        name: str,
        write: Callable[[list[Item]], Awaitable[Sequence[Result | BaseException]]],
        max_batch: int,
    ) -> None:
        self._write = write
        self._max_batch = max_batch
        self._batch_size = RECORD_BATCH_SIZE.labels(name)
        self._queue: list[_Waiting[Item, Result]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Result:
        done: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queue.append(_Waiting(item, done))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_all())
        # A request cancelled here may still see its write go through with the batch: the
        # same as a cancellation just after the write, which the reconciler covers.
        return await done

    async def _write_all(self) -> None:
        try:
            while self._queue:
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                self._batch_size.observe(len(batch))
                try:
                    results = await self._write([waiting.item for waiting in batch])
                except BaseException as error:  # cancellation (shutdown) or a bug
                    results = [error] * len(batch)
                    if not isinstance(error, Exception):
                        raise
                    log.exception("group write failed")
                finally:
                    for waiting, result in zip(batch, results, strict=True):
                        _settle(waiting.done, result)
        finally:
            self._writer = None
            # Only a cancelled writer leaves writes queued: never leave a request hanging.
            for waiting in self._queue:
                _settle(waiting.done, StorageUnavailable("the gateway is shutting down"))
            self._queue.clear()

    async def aclose(self) -> None:
        """Let the batch being written finish (its requests are waiting for it)."""
        if self._writer is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._writer)


def _settle(done: asyncio.Future[Result], result: Result | BaseException) -> None:
    if done.done():  # its request was cancelled
        return
    if isinstance(result, StorageUnavailable):
        # One exception object per request: each raises (and logs) its own.
        done.set_exception(StorageUnavailable(result.detail))
    elif isinstance(result, BaseException):
        done.set_exception(result)
    else:
        done.set_result(result)


class GroupCommitRecorder:
    """The PaymentRecorder of the SQL storage: new payments and outcomes, group-committed."""

    def __init__(self, uow: SqlUnitOfWorkFactory, *, max_batch: int = 100) -> None:
        self._uow = uow
        self._payments = _Batcher[NewPayment, None]("payments", self._insert, max_batch)
        self._outcomes = _Batcher[Outcome, bool]("outcomes", self._update, max_batch)

    async def record(self, new: NewPayment) -> None:
        await self._payments.submit(new)

    async def record_outcome(self, outcome: Outcome) -> bool:
        return await self._outcomes.submit(outcome)

    async def aclose(self) -> None:
        await self._payments.aclose()
        await self._outcomes.aclose()

    # -- the writes

    async def _insert(self, batch: list[NewPayment]) -> list[BaseException | None]:
        try:
            async with self._uow() as uow:
                await uow.payments.add_many(batch)
                await uow.commit()
        except DuplicateIdempotencyKey as duplicate:
            if len(batch) == 1:
                return [duplicate]
            return [result for new in batch for result in await self._insert([new])]
        except StorageUnavailable as error:
            return [error] * len(batch)
        return [None] * len(batch)

    async def _update(self, batch: list[Outcome]) -> list[bool | BaseException]:
        if len(batch) > 1:
            try:
                async with self._uow() as uow:
                    # Sorted, so concurrent batches lock rows in the same order.
                    ordered = sorted(batch, key=lambda outcome: outcome.payment_id)
                    if await uow.payments.apply_resolutions(ordered) == len(batch):
                        await uow.commit()
                        return [True] * len(batch)
                    # Not all applied: roll back and learn which, one by one, below.
            except Exception:
                log.info("batched outcome write failed; writing one by one", exc_info=True)
        results: list[bool | BaseException] = []
        for outcome in batch:
            try:
                async with self._uow(single_statement=True) as uow:
                    applied = await uow.payments.apply_resolution(
                        outcome.payment_id, outcome.resolution, outcome.now, outcome.next_attempt_at
                    )
                    await uow.commit()
                results.append(applied)
            except Exception as error:
                results.append(error)
        return results
