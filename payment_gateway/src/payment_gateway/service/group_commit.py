"""Group commit: writes that arrive together are committed in one transaction.

At a few hundred payments a second most of the cost of a write is per transaction, not per
row: the round trips, the COMMIT and its log flush, and the driver and SQLAlchemy work around
each statement. So each process has one writer for both kinds of write a payment makes: its
new row before the bank call, and its status after it. A write that arrives while the writer
is busy joins the next batch; the writer runs the batch in one transaction, then tells each
waiting request what happened to its own write. Under load one transaction carries the new
rows of some payments and the outcomes of others, so a payment costs one transaction's share,
not two. Alone, a write goes out at once, as it would without batching; after a batch that
several writes shared (there is load), the writer waits 1 ms before the next, so that the
writes of the requests being served right now join it instead of each starting a transaction.

- New payments: the batch's cards and payments go in as two multi-row INSERTs.
  Each request still waits for that commit before its bank call.
- Transitions (the status after the bank call, from a request or the reconciler): one guarded
  UPDATE per payment, sent together, then the events of the rows they changed.
- If the batch fails (an idempotency key already claimed, most likely) or any payment's
  status no longer allowed its transition (another path got there first), nothing of it was
  committed. Its new payments are then written as a batch of their own and its transitions as
  another, side by side, each within its own timeout and falling back to one by one as it
  fails, so every caller learns what happened to its own write, and a failure reaches only
  the request whose row failed. A lost
  connection may hide a COMMIT that went through, so then the new payments are not written
  again here: their requests hear of it, as for a batch of new payments alone.

Batched or not, the writes are the recorder's (service/recording.py): the one write path.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from payment_gateway.metrics import RECORD_BATCH_SIZE
from payment_gateway.service.errors import StorageContention, StorageUnavailable
from payment_gateway.service.ports import NewPayment, StatusTransition
from payment_gateway.service.recording import TransactionalRecorder

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass(slots=True)
class _Waiting(Generic[Item, Result]):
    item: Item
    done: asyncio.Future[Result]


class _Batcher(Generic[Item, Result]):
    """Queues items; one task at a time writes everything queued so far, as one batch.

    ``write`` returns one result (or exception) per item, in order. After a batch of more
    than one item, the writer waits ``linger`` seconds before taking the next.
    """

    def __init__(
        self,
        write: Callable[[list[Item]], Awaitable[Sequence[Result | BaseException]]],
        max_batch: int,
        linger: float,
    ) -> None:
        self._write = write
        self._max_batch = max_batch
        self._linger = linger
        self._queue: list[_Waiting[Item, Result]] = []
        self._writer: asyncio.Task[None] | None = None
        self._last_shared = False  # whether the last batch carried more than one write

    async def submit(self, item: Item) -> Result:
        done: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queue.append(_Waiting(item, done))
        if self._writer is None:
            # A context of its own: the writer serves many requests, not the first one's.
            self._writer = asyncio.create_task(self._write_all(), context=contextvars.Context())
        # A request cancelled here may still see its write go through with the batch: the
        # same as a cancellation just after the write, which the reconciler covers.
        return await done

    async def _write_all(self) -> None:
        try:
            while self._queue:
                if self._last_shared:
                    await asyncio.sleep(self._linger)
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                self._last_shared = len(batch) > 1
                results: Sequence[Result | BaseException]
                try:
                    results = await self._write([waiting.item for waiting in batch])
                except Exception as error:  # a bug: each request reports it
                    log.exception("group write failed")
                    results = [error] * len(batch)
                except BaseException:  # cancelled (shutdown): the requests hear "unavailable"
                    for waiting in batch:
                        _settle(waiting.done, StorageUnavailable("the gateway is shutting down"))
                    raise
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
        # One exception object per request: each raises (and logs) its own. Its class is
        # kept: a conflict (StorageContention) may be retried where a lost connection may not.
        done.set_exception(type(result)(result.detail))
    elif isinstance(result, BaseException):
        done.set_exception(result)
    else:
        done.set_result(result)


Write = NewPayment | StatusTransition

# How long the writer waits, after a shared batch, for more writes to join the next: the event
# loop's timer resolution (libuv's is 1 ms; a shorter sleep does not wait for I/O at all). At
# c16 it halved the transactions per payment (docs/design.md, Group commit).
LINGER_SECONDS = 0.001


class GroupCommitRecorder:
    """A PaymentRecorder that commits the writes arriving together in one transaction."""

    def __init__(
        self,
        recorder: TransactionalRecorder,
        *,
        max_batch: int = 100,
        timeout: float = 10.0,
        linger: float = LINGER_SECONDS,
    ) -> None:
        self._recorder = recorder
        self._timeout = timeout
        # True for a write that went through; a transition's False: its payment no longer
        # allowed it.
        self._writes = _Batcher[Write, bool](self._write, max_batch, linger)
        self._payments_per_batch = RECORD_BATCH_SIZE.labels("payments")
        self._transitions_per_batch = RECORD_BATCH_SIZE.labels("transitions")

    async def record(self, new: NewPayment) -> None:
        await self._writes.submit(new)

    async def record_transition(self, transition: StatusTransition) -> bool:
        return await self._writes.submit(transition)

    async def aclose(self) -> None:
        await self._writes.aclose()

    # -- the writes

    async def _write(self, batch: list[Write]) -> list[bool | BaseException]:
        news = [write for write in batch if isinstance(write, NewPayment)]
        transitions = [write for write in batch if isinstance(write, StatusTransition)]
        if news:
            self._payments_per_batch.observe(len(news))
        if transitions:
            self._transitions_per_batch.observe(len(transitions))
        if not transitions:
            return await self._apart(self._insert, news)
        if not news:
            return await self._apart(self._update, transitions)
        try:
            if await self._timed(self._recorder.record_together(news, transitions)):
                return [True] * len(batch)
            # A transition no longer applied (and nothing was written): apart, below.
        except StorageContention:  # rolled back by the server: nothing was written
            log.info("batched write met a conflict; writing payments and transitions apart")
        except StorageUnavailable as error:
            # Perhaps committed unseen, so the new payments are not written again here:
            # their requests retry with fresh ids (PaymentService), as after a batch of new
            # payments alone. Transitions are guarded: each is tried on its own.
            one_by_one = functools.partial(_one_by_one, self._recorder.record_transition)
            updated = await self._apart(one_by_one, transitions)
            return _in_order(batch, [error] * len(news), updated)
        except Exception:
            log.info("batched write failed; writing payments and transitions apart")
        # Side by side, as two writers would: a slow kind does not hold up the other's answers.
        inserted, updated = await asyncio.gather(
            self._apart(self._insert, news), self._apart(self._update, transitions)
        )
        return _in_order(batch, inserted, updated)

    async def _timed(self, write: Awaitable[Result]) -> Result:
        """One stuck transaction must not hold every request of the process for ever: past the
        timeout its writes count as not seen (StorageUnavailable), which the callers already
        treat as "maybe committed, retry safely"."""
        try:
            async with asyncio.timeout(self._timeout):
                return await write
        except TimeoutError:
            log.error("group write timed out after %s s", self._timeout)
            raise StorageUnavailable("the database did not answer in time") from None

    async def _apart(
        self,
        write: Callable[[list[Item]], Awaitable[list[bool | BaseException]]],
        items: list[Item],
    ) -> list[bool | BaseException]:
        """One kind's writes, within the timeout of their own."""
        try:
            return await self._timed(write(items))
        except StorageUnavailable as error:
            return [error] * len(items)

    async def _insert(self, batch: list[NewPayment]) -> list[bool | BaseException]:
        if len(batch) > 1:
            try:
                await self._recorder.record_many(batch)
            except StorageUnavailable as error:
                return [error] * len(batch)
            except Exception as error:
                # Whose row was it (a reused idempotency key, most likely)? Nothing of the
                # batch was committed: write each on its own, so only that request hears of it.
                failure = type(error).__name__
                log.info("batched payment write failed (%s); writing one by one", failure)
            else:
                return [True] * len(batch)
        return await _one_by_one(self._record, batch)

    async def _record(self, new: NewPayment) -> bool:
        await self._recorder.record(new)
        return True

    async def _update(self, batch: list[StatusTransition]) -> list[bool | BaseException]:
        if len(batch) > 1:
            try:
                if await self._recorder.record_all_transitions(batch):
                    return [True] * len(batch)
                # Not all applied (and nothing was): learn which, one by one, below.
            except Exception:
                log.info("batched transition write failed; writing one by one", exc_info=True)
        return await _one_by_one(self._recorder.record_transition, batch)


def _in_order(
    batch: list[Write], inserted: list[bool | BaseException], updated: list[bool | BaseException]
) -> list[bool | BaseException]:
    """The results of a batch's new payments and of its transitions, in the batch's order."""
    news, transitions = iter(inserted), iter(updated)
    return [next(news) if isinstance(write, NewPayment) else next(transitions) for write in batch]


async def _one_by_one(
    write: Callable[[Item], Awaitable[Result]], batch: list[Item]
) -> list[Result | BaseException]:
    """Each item in a transaction of its own; an error belongs to its item's request."""
    results: list[Result | BaseException] = []
    for item in batch:
        try:
            results.append(await write(item))
        except Exception as error:  # handed to the request that owns it
            results.append(error)
    return results
