"""GroupCommitRecorder on real databases: concurrent payments share a transaction, and each
request still hears exactly what happened to its own payment."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from payment_gateway.domain.card import CardSummary
from payment_gateway.domain.merchant import Merchant
from payment_gateway.domain.payment import Payment, PaymentStatus, Resolution
from payment_gateway.service.errors import StorageContention, StorageUnavailable
from payment_gateway.service.group_commit import GroupCommitRecorder
from payment_gateway.service.ports import (
    DuplicateIdempotencyKey,
    IdempotencyRecord,
    NewPayment,
    StatusTransition,
    StoredCard,
)
from payment_gateway.service.recording import TransactionalRecorder
from payment_gateway.storage.database import create_engine
from payment_gateway.storage.migrate import migrate
from payment_gateway.storage.tables import cards, events, payments
from payment_gateway.storage.unit_of_work import SqlUnitOfWork, SqlUnitOfWorkFactory
from sqlalchemy import func, select


class CountingFactory(SqlUnitOfWorkFactory):
    """The real unit of work, counting the transactions opened."""

    transactions = 0

    def __call__(self, *, read_only: bool = False, single_statement: bool = False) -> SqlUnitOfWork:
        self.transactions += 1
        return super().__call__(read_only=read_only, single_statement=single_statement)


@dataclass
class Store:
    uow: CountingFactory
    merchant: Merchant

    async def count(self, **where: str) -> int:
        statement = select(func.count()).select_from(payments)
        statement = statement.where(payments.c.merchant_id == self.merchant.id)
        for column, value in where.items():
            statement = statement.where(payments.c[column] == value)
        async with self.uow.engine.connect() as connection:
            return int(await connection.scalar(statement) or 0)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    engine = create_engine(database_url, pool_size=4)
    await migrate(engine)
    uow = CountingFactory(engine)
    merchant = Merchant(str(uuid.uuid4()), f"group-commit-{uuid.uuid4().hex[:8]}")
    async with uow() as work:
        await work.merchants.add(merchant, datetime.now(UTC))
        await work.commit()
    try:
        yield Store(uow, merchant)
    finally:
        await uow.dispose()


def new_payment(merchant: Merchant, key: str | None = None) -> NewPayment:
    now = datetime.now(UTC)
    payment = Payment(
        id=str(uuid.uuid4()),
        merchant_id=merchant.id,
        status=PaymentStatus.INIT,
        amount=1000,
        currency="EUR",
        reference="group-commit",
        card=CardSummary("4242", "visa", 12, 2042),
        created_at=now,
        updated_at=now,
    )
    card = StoredCard(str(uuid.uuid4()), b"ciphertext", None, "424242")
    idempotency = IdempotencyRecord(key, "hash") if key else None
    return NewPayment(payment, card, idempotency, now + timedelta(seconds=60))


async def test_concurrent_payments_are_committed_together(store: Store) -> None:
    recorder = GroupCommitRecorder(TransactionalRecorder(store.uow))
    before = store.uow.transactions
    await asyncio.gather(*(recorder.record(new_payment(store.merchant)) for _ in range(40)))
    # All 40 arrive before the writer gets to run: one transaction for all of them.
    assert store.uow.transactions - before == 1
    assert await store.count() == 40


async def test_a_payment_alone_is_written_at_once(store: Store) -> None:
    recorder = GroupCommitRecorder(TransactionalRecorder(store.uow))
    await recorder.record(new_payment(store.merchant))
    assert await store.count() == 1
    await recorder.record(new_payment(store.merchant))
    assert await store.count() == 2


async def test_batches_are_bounded(store: Store) -> None:
    recorder = GroupCommitRecorder(TransactionalRecorder(store.uow), max_batch=8)
    before = store.uow.transactions
    await asyncio.gather(*(recorder.record(new_payment(store.merchant)) for _ in range(25)))
    assert store.uow.transactions - before == 4  # 8 + 8 + 8 + 1
    assert await store.count() == 25


async def test_after_a_shared_batch_the_writer_waits_for_more_writes(store: Store) -> None:
    recorder = GroupCommitRecorder(TransactionalRecorder(store.uow), linger=0.5)
    await asyncio.gather(*(recorder.record(new_payment(store.merchant)) for _ in range(2)))
    before = store.uow.transactions

    first = asyncio.create_task(recorder.record(new_payment(store.merchant)))
    for _ in range(3):  # a few turns of the event loop later, while the writer waits
        await asyncio.sleep(0)
    second = asyncio.create_task(recorder.record(new_payment(store.merchant)))
    await asyncio.gather(first, second)

    # Without the wait the first would have gone out alone, in a transaction of its own.
    assert store.uow.transactions - before == 1
    assert await store.count() == 4


async def test_writes_that_come_alone_are_not_held(store: Store) -> None:
    recorder = GroupCommitRecorder(TransactionalRecorder(store.uow), linger=60)
    async with asyncio.timeout(10):  # a write held for the linger would take a minute
        for _ in range(3):
            await recorder.record(new_payment(store.merchant))
    assert await store.count() == 3


async def test_a_reused_key_fails_only_its_own_request(store: Store) -> None:
    recorder = GroupCommitRecorder(TransactionalRecorder(store.uow))
    await recorder.record(new_payment(store.merchant, key="taken"))
    batch = [new_payment(store.merchant, key=f"k-{n}") for n in range(6)]
    batch.insert(3, new_payment(store.merchant, key="taken"))  # reuses an existing key
    batch.append(new_payment(store.merchant, key="k-1"))  # reuses a key of the same batch

    results = await asyncio.gather(
        recorder.record(new_payment(store.merchant)),
        *(recorder.record(new) for new in batch),
        return_exceptions=True,
    )

    failed = [r for r in results if isinstance(r, BaseException)]
    assert len(failed) == 2
    assert all(isinstance(error, DuplicateIdempotencyKey) for error in failed)
    assert results[1 + 3] is failed[0]  # the one that reused "taken"
    assert results[-1] is failed[1]  # the second "k-1"
    assert await store.count() == 1 + 1 + 6
    assert await store.count(idempotency_key="taken") == 1
    assert await store.count(idempotency_key="k-1") == 1


@pytest.fixture
async def unreachable() -> AsyncIterator[GroupCommitRecorder]:
    """A recorder whose database is down (nothing listens on port 1)."""
    dead = SqlUnitOfWorkFactory(create_engine("mysql+asyncmy://nobody@127.0.0.1:1/none"))
    try:
        yield GroupCommitRecorder(TransactionalRecorder(dead))
    finally:
        await dead.dispose()


async def test_a_database_outage_reaches_every_waiting_request(
    store: Store, unreachable: GroupCommitRecorder
) -> None:
    results = await asyncio.gather(
        *(unreachable.record(new_payment(store.merchant)) for _ in range(5)),
        return_exceptions=True,
    )
    assert all(isinstance(r, StorageUnavailable) for r in results)
    assert len({id(r) for r in results}) == 5  # each request raises an exception of its own


async def test_a_cancelled_request_does_not_stop_the_others(store: Store) -> None:
    recorder = GroupCommitRecorder(TransactionalRecorder(store.uow))
    first = asyncio.create_task(recorder.record(new_payment(store.merchant)))
    queued = [asyncio.create_task(recorder.record(new_payment(store.merchant))) for _ in range(5)]
    await asyncio.sleep(0)
    queued[2].cancel()
    await first
    done = await asyncio.gather(*queued, return_exceptions=True)
    assert isinstance(done[2], asyncio.CancelledError)
    assert [r for i, r in enumerate(done) if i != 2] == [None] * 4
    # A cancelled request's payment may still be committed with its batch (the reconciler
    # settles it, as after any request cut off once its payment was recorded).
    assert await store.count() in (5, 6)


# --- outcomes ----------------------------------------------------------------------------------


async def recorded(store: Store, recorder: GroupCommitRecorder, count: int) -> list[NewPayment]:
    news = [new_payment(store.merchant) for _ in range(count)]
    await asyncio.gather(*(recorder.record(new) for new in news))
    return news


async def status_of(store: Store, payment_id: str) -> tuple[str, str | None]:
    async with store.uow.engine.connect() as connection:
        row = (
            await connection.execute(
                select(payments.c.status, payments.c.code).where(payments.c.id == payment_id)
            )
        ).one()
    return row.status, row.code


def outcome(new: NewPayment, status: PaymentStatus, code: str) -> StatusTransition:
    resolution = Resolution(status, code=code)
    return StatusTransition(
        new.payment.id, new.payment.merchant_id, resolution, datetime.now(UTC), None
    )


async def test_concurrent_outcomes_are_committed_together(store: Store) -> None:
    recorder = GroupCommitRecorder(TransactionalRecorder(store.uow))
    news = await recorded(store, recorder, 12)
    targets = [
        (PaymentStatus.SUCCEEDED, "0"),
        (PaymentStatus.FAILED, "100"),
        (PaymentStatus.PROCESSING, "200"),
    ]
    before = store.uow.transactions

    applied = await asyncio.gather(
        *(recorder.record_transition(outcome(new, *targets[i % 3])) for i, new in enumerate(news))
    )

    assert applied == [True] * 12
    assert store.uow.transactions - before == 1
    for i, new in enumerate(news):
        status, code = targets[i % 3]
        assert await status_of(store, new.payment.id) == (status.value, code)


async def test_an_outcome_its_payment_no_longer_allows_is_refused_alone(store: Store) -> None:
    recorder = GroupCommitRecorder(TransactionalRecorder(store.uow))
    news = await recorded(store, recorder, 6)
    # The reconciler got to one of them first: it is already succeeded.
    assert await recorder.record_transition(outcome(news[2], PaymentStatus.SUCCEEDED, "0"))

    applied = await asyncio.gather(
        *(recorder.record_transition(outcome(new, PaymentStatus.FAILED, "100")) for new in news)
    )

    assert applied == [True, True, False, True, True, True]
    assert await status_of(store, news[2].payment.id) == ("succeeded", "0")
    for new in news[:2] + news[3:]:
        assert await status_of(store, new.payment.id) == ("failed", "100")


async def test_an_outcome_batch_that_cannot_reach_the_database_fails_each_request(
    store: Store, unreachable: GroupCommitRecorder
) -> None:
    news = await recorded(store, GroupCommitRecorder(TransactionalRecorder(store.uow)), 4)
    results = await asyncio.gather(
        *(unreachable.record_transition(outcome(n, PaymentStatus.SUCCEEDED, "0")) for n in news),
        return_exceptions=True,
    )
    assert all(isinstance(r, StorageUnavailable) for r in results)
    for new in news:
        assert await status_of(store, new.payment.id) == ("init", None)


# --- new payments and outcomes together --------------------------------------------------------


async def event_objects(store: Store) -> list[str]:
    """The payments that have an event (an outcome's; a creation has none)."""
    statement = select(events.c.object_id).where(events.c.merchant_id == store.merchant.id)
    async with store.uow.engine.connect() as connection:
        return sorted((await connection.scalars(statement)).all())


async def mixed_batch(
    recorder: GroupCommitRecorder,
    arriving: list[NewPayment],
    charged: list[NewPayment],
    status: PaymentStatus = PaymentStatus.SUCCEEDED,
    code: str = "0",
) -> list[object]:
    """New payments arriving with the outcomes of charged ones; each request's result."""
    return await asyncio.gather(
        *(recorder.record(new) for new in arriving),
        *(recorder.record_transition(outcome(n, status, code)) for n in charged),
        return_exceptions=True,
    )


async def test_new_payments_and_outcomes_arriving_together_share_one_transaction(
    store: Store,
) -> None:
    recorder = GroupCommitRecorder(TransactionalRecorder(store.uow))
    charged = await recorded(store, recorder, 4)
    arriving = [new_payment(store.merchant) for _ in range(4)]
    before = store.uow.transactions

    results = await mixed_batch(recorder, arriving, charged)

    assert results == [None] * 4 + [True] * 4
    assert store.uow.transactions - before == 1
    assert await store.count(status="init") == 4
    assert await store.count(status="succeeded") == 4
    assert await event_objects(store) == sorted(n.payment.id for n in charged)


async def test_an_outcome_that_no_longer_applies_is_refused_alone_in_a_mixed_batch(
    store: Store,
) -> None:
    recorder = GroupCommitRecorder(TransactionalRecorder(store.uow))
    charged = await recorded(store, recorder, 3)
    # The reconciler got to one of them first.
    assert await recorder.record_transition(outcome(charged[1], PaymentStatus.SUCCEEDED, "0"))
    arriving = [new_payment(store.merchant) for _ in range(3)]

    results = await mixed_batch(recorder, arriving, charged, PaymentStatus.FAILED, "100")

    assert results == [None] * 3 + [True, False, True]
    assert await store.count(status="init") == 3
    assert await status_of(store, charged[1].payment.id) == ("succeeded", "0")
    for new in (charged[0], charged[2]):
        assert await status_of(store, new.payment.id) == ("failed", "100")
    # One event per change that applied: none for the refused outcome.
    assert await event_objects(store) == sorted(n.payment.id for n in charged)


async def test_a_reused_key_in_a_mixed_batch_fails_only_its_own_request(store: Store) -> None:
    recorder = GroupCommitRecorder(TransactionalRecorder(store.uow))
    await recorder.record(new_payment(store.merchant, key="taken"))
    charged = await recorded(store, recorder, 2)
    arriving = [new_payment(store.merchant, key="taken"), new_payment(store.merchant)]

    results = await mixed_batch(recorder, arriving, charged)

    assert isinstance(results[0], DuplicateIdempotencyKey)
    assert results[1:] == [None, True, True]
    assert await store.count(idempotency_key="taken") == 1
    assert await store.count(status="init") == 2  # the first "taken" and the other new one
    assert await store.count(status="succeeded") == 2


class FailingMixedBatches(TransactionalRecorder):
    """Every mixed batch fails with ``error`` before the recorder writes anything."""

    def __init__(self, uow: SqlUnitOfWorkFactory, error: type[StorageUnavailable]) -> None:
        super().__init__(uow)
        self.error = error

    async def record_together(
        self, news: Sequence[NewPayment], transitions: Sequence[StatusTransition]
    ) -> bool:
        if news and transitions:
            raise self.error("the mixed batch failed")
        return await super().record_together(news, transitions)


async def test_a_mixed_batch_that_may_have_committed_is_not_written_again(store: Store) -> None:
    # A lost connection: the COMMIT's answer may never have come.
    recorder = GroupCommitRecorder(FailingMixedBatches(store.uow, StorageUnavailable))
    charged = await recorded(store, recorder, 2)

    results = await mixed_batch(recorder, [new_payment(store.merchant)], charged)

    # The new payment's request hears it and retries with fresh ids (PaymentService): written
    # again here, a payment whose first COMMIT did go through would be refused as a duplicate.
    assert isinstance(results[0], StorageUnavailable)
    assert await store.count(status="init") == 0
    # Transitions are guarded, so each is tried again on its own.
    assert results[1:] == [True, True]
    assert await store.count(status="succeeded") == 2


async def test_a_mixed_batch_that_met_a_conflict_is_written_apart(store: Store) -> None:
    # A deadlock: the server rolled it all back.
    recorder = GroupCommitRecorder(FailingMixedBatches(store.uow, StorageContention))
    charged = await recorded(store, recorder, 2)

    results = await mixed_batch(recorder, [new_payment(store.merchant)], charged)

    assert results == [None, True, True]  # nothing was written: all of it again, apart
    assert await store.count(status="init") == 1
    assert await store.count(status="succeeded") == 2


class SlowTransitions(TransactionalRecorder):
    """Transitions written on their own take longer than the group commit's timeout."""

    async def record_all_transitions(self, batch: Sequence[StatusTransition]) -> bool:
        await asyncio.sleep(5)
        return await super().record_all_transitions(batch)


async def test_slow_transitions_do_not_hold_or_fail_new_payments_written_apart(
    store: Store,
) -> None:
    recorder = GroupCommitRecorder(SlowTransitions(store.uow), timeout=0.5)
    await recorder.record(new_payment(store.merchant, key="taken"))
    charged = await recorded(store, recorder, 2)
    # A reused key fails the mixed batch: its parts are written apart.
    arriving = [new_payment(store.merchant, key="taken"), new_payment(store.merchant)]

    results = await mixed_batch(recorder, arriving, charged)

    assert isinstance(results[0], DuplicateIdempotencyKey)
    assert results[1] is None  # committed, and told so: the transitions' timeout is theirs
    assert all(isinstance(r, StorageUnavailable) for r in results[2:])
    assert await store.count(idempotency_key="taken") == 1
    assert await store.count(status="init") == 4  # "taken", the two charged, the new one


# --- failures ----------------------------------------------------------------------------------


async def test_any_failing_row_fails_only_its_own_request(store: Store) -> None:
    recorder = GroupCommitRecorder(TransactionalRecorder(store.uow))
    orphan = new_payment(Merchant(str(uuid.uuid4()), "no such merchant"))  # breaks the FK
    batch = [new_payment(store.merchant) for _ in range(4)]
    batch.insert(2, orphan)

    results = await asyncio.gather(*(recorder.record(new) for new in batch), return_exceptions=True)

    assert [isinstance(r, Exception) for r in results] == [False, False, True, False, False]
    assert await store.count() == 4


class StallingFactory(SqlUnitOfWorkFactory):
    """Transactions that hang before they start, until told otherwise."""

    stall = True

    def __call__(self, *, read_only: bool = False, single_statement: bool = False) -> SqlUnitOfWork:
        factory = self

        class Stalling(SqlUnitOfWork):
            async def __aenter__(self) -> Stalling:
                while factory.stall:
                    await asyncio.sleep(0.01)
                return await super().__aenter__()

        return Stalling(self.engine, read_only=read_only)


async def test_a_stuck_batch_times_out_and_the_writer_goes_on(store: Store) -> None:
    stalling = StallingFactory(store.uow.engine)
    recorder = GroupCommitRecorder(TransactionalRecorder(stalling), timeout=0.2)

    results = await asyncio.gather(
        *(recorder.record(new_payment(store.merchant)) for _ in range(3)),
        return_exceptions=True,
    )

    assert all(isinstance(r, StorageUnavailable) for r in results)
    stalling.stall = False
    await recorder.record(new_payment(store.merchant))
    assert await store.count() == 1


async def test_outcome_fields_null_in_a_whole_batch_are_written_as_null_or_kept(
    store: Store,
) -> None:
    recorder = GroupCommitRecorder(TransactionalRecorder(store.uow))
    news = await recorded(store, recorder, 4)
    now = datetime.now(UTC)
    pending = Resolution(PaymentStatus.PROCESSING, code="200", tracking_id="tx-kept")
    first = await asyncio.gather(
        *(
            recorder.record_transition(
                StatusTransition(n.payment.id, n.payment.merchant_id, pending, now, now)
            )
            for n in news
        )
    )
    assert first == [True] * 4
    # The bank's final answer carries no tracking id and no decline reason, in every row.
    settled = Resolution(PaymentStatus.SUCCEEDED, code="0")
    applied = await asyncio.gather(
        *(
            recorder.record_transition(
                StatusTransition(n.payment.id, n.payment.merchant_id, settled, now, None)
            )
            for n in news
        )
    )

    assert applied == [True] * 4
    async with store.uow.engine.connect() as connection:
        rows = (
            await connection.execute(
                select(
                    payments.c.status,
                    payments.c.code,
                    payments.c.decline_reason,
                    payments.c.tracking_id,
                    payments.c.next_attempt_at,
                ).where(payments.c.id.in_([n.payment.id for n in news]))
            )
        ).all()
    assert [tuple(row) for row in rows] == [("succeeded", "0", None, "tx-kept", None)] * 4


async def test_new_payment_fields_null_in_a_whole_batch_or_some_rows_are_written_as_null(
    store: Store,
) -> None:
    """The batch's INSERTs leave out the columns that are NULL in every row (bulk execution
    refuses them): each row must still read back as it was given."""
    recorder = GroupCommitRecorder(TransactionalRecorder(store.uow))
    # No key, no holder name, no 3-D Secure, no checkout session in any row ...
    bare = [new_payment(store.merchant) for _ in range(3)]
    # ... and a key in every other row.
    mixed = [
        new_payment(store.merchant, f"key-{uuid.uuid4().hex}" if i % 2 else None) for i in range(4)
    ]
    before = store.uow.transactions
    await asyncio.gather(*(recorder.record(new) for new in bare))
    await asyncio.gather(*(recorder.record(new) for new in mixed))

    assert store.uow.transactions - before == 2  # one multi-row INSERT per batch
    statement = select(
        payments.c.id,
        payments.c.reference,
        payments.c.idempotency_key,
        payments.c.request_hash,
        payments.c.three_d_secure,
        payments.c.checkout_session_id,
        payments.c.next_attempt_at.is_not(None),
        cards.c.holder_name_encrypted,
        cards.c.bin,
    ).join(cards, cards.c.id == payments.c.card_id)
    async with store.uow.engine.connect() as connection:
        rows = {
            row[0]: tuple(row[1:])
            for row in await connection.execute(
                statement.where(payments.c.merchant_id == store.merchant.id)
            )
        }
    expected = {
        new.payment.id: (
            "group-commit",
            new.idempotency.key if new.idempotency else None,
            "hash" if new.idempotency else None,
            None,
            None,
            True,
            None,
            "424242",
        )
        for new in bare + mixed
    }
    assert rows == expected
