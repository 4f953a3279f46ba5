"""Listing payments over the fake store: pages both ways, has_more, filters, limits, cursors."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from fakes import FakeStore, FakeUnitOfWorkFactory, PaymentRow
from payment_gateway.domain.card import CardSummary
from payment_gateway.domain.merchant import Merchant
from payment_gateway.domain.payment import Payment, PaymentStatus
from payment_gateway.service.errors import InvalidRequest, NotFound
from payment_gateway.service.listing import PaymentListQuery, list_payments
from payment_gateway.service.ports import PaymentFilters, StoredCard

T0 = datetime(2030, 1, 1, tzinfo=UTC)
STATUSES = [PaymentStatus.SUCCEEDED, PaymentStatus.FAILED, PaymentStatus.PROCESSING]


def add_payment(
    store: FakeStore,
    merchant: Merchant,
    number: int,
    *,
    created_at: datetime,
    status: PaymentStatus = PaymentStatus.SUCCEEDED,
    reference: str | None = None,
) -> Payment:
    payment = Payment(
        id=f"{merchant.id}-{number:04d}",
        merchant_id=merchant.id,
        status=status,
        amount=100 + number,
        currency="USD",
        reference=reference,
        card=CardSummary("4242", "visa", 12, 2042),
        created_at=created_at,
        updated_at=created_at,
    )
    card = StoredCard(f"card-{payment.id}", b"token", None, None)
    store.payments[payment.id] = PaymentRow(payment, card, None, None, None)
    return payment


@pytest.fixture
def history(store: FakeStore, merchant: Merchant) -> list[Payment]:
    """25 payments a minute apart, oldest first, statuses and references cycling."""
    return [
        add_payment(
            store,
            merchant,
            n,
            created_at=T0 + timedelta(minutes=n),
            status=STATUSES[n % 3],
            reference=f"order-{n % 5}",
        )
        for n in range(25)
    ]


def ids(payments: list[Payment]) -> list[str]:
    return [payment.id for payment in payments]


async def test_first_page_is_the_newest_and_says_there_is_more(
    uow_factory: FakeUnitOfWorkFactory, merchant: Merchant, history: list[Payment]
) -> None:
    page = await list_payments(uow_factory, merchant, PaymentListQuery(limit=10))

    assert ids(page.payments) == ids(history[::-1][:10])
    assert page.has_more


async def test_starting_after_pages_older_until_the_end(
    uow_factory: FakeUnitOfWorkFactory, merchant: Merchant, history: list[Payment]
) -> None:
    seen: list[Payment] = []
    more = [True]
    cursor = None
    while more[-1]:
        page = await list_payments(
            uow_factory, merchant, PaymentListQuery(limit=10, starting_after=cursor)
        )
        seen += page.payments
        more.append(page.has_more)
        cursor = page.payments[-1].id

    assert ids(seen) == ids(history[::-1])
    assert more[1:] == [True, True, False]  # pages of 10, 10 and 5


async def test_ending_before_pages_newer_still_newest_first(
    uow_factory: FakeUnitOfWorkFactory, merchant: Merchant, history: list[Payment]
) -> None:
    oldest = history[0]
    page = await list_payments(
        uow_factory, merchant, PaymentListQuery(limit=10, ending_before=oldest.id)
    )
    # The ten just after the oldest, shown newest first, with 14 newer still.
    assert ids(page.payments) == ids(history[1:11][::-1])
    assert page.has_more

    last = await list_payments(
        uow_factory, merchant, PaymentListQuery(limit=10, ending_before=history[15].id)
    )
    assert ids(last.payments) == ids(history[16:][::-1])
    assert not last.has_more


async def test_payments_created_at_the_same_instant_are_ordered_by_id(
    store: FakeStore, uow_factory: FakeUnitOfWorkFactory, merchant: Merchant
) -> None:
    twins = [add_payment(store, merchant, n, created_at=T0) for n in (3, 1, 2)]
    by_id = sorted(twins, key=lambda payment: payment.id, reverse=True)

    first = await list_payments(uow_factory, merchant, PaymentListQuery(limit=1))
    second = await list_payments(
        uow_factory, merchant, PaymentListQuery(limit=1, starting_after=first.payments[0].id)
    )
    back = await list_payments(
        uow_factory, merchant, PaymentListQuery(limit=1, ending_before=by_id[2].id)
    )

    assert ids(first.payments + second.payments) == ids(by_id[:2])
    assert ids(back.payments) == [by_id[1].id]


async def test_filters_combine(
    uow_factory: FakeUnitOfWorkFactory, merchant: Merchant, history: list[Payment]
) -> None:
    filters = PaymentFilters(
        status=PaymentStatus.FAILED,
        created_gte=history[4].created_at,
        created_lt=history[20].created_at,
    )
    page = await list_payments(uow_factory, merchant, PaymentListQuery(filters=filters))

    expected = [p for p in history[4:20] if p.status is PaymentStatus.FAILED][::-1]
    assert ids(page.payments) == ids(expected)
    assert len(expected) == 6
    assert not page.has_more


async def test_strict_and_inclusive_bounds_differ_at_the_boundary(
    uow_factory: FakeUnitOfWorkFactory, merchant: Merchant, history: list[Payment]
) -> None:
    at = history[10].created_at

    async def listed(filters: PaymentFilters) -> list[str]:
        query = PaymentListQuery(limit=100, filters=filters)
        return ids((await list_payments(uow_factory, merchant, query)).payments)

    assert await listed(PaymentFilters(created_gte=at, created_lte=at)) == [history[10].id]
    assert await listed(PaymentFilters(created_gt=at, created_lte=at)) == []
    assert await listed(PaymentFilters(created_gte=at, created_lt=at)) == []
    assert len(await listed(PaymentFilters(created_gt=at))) == 14


async def test_reference_filter_with_paging(
    uow_factory: FakeUnitOfWorkFactory, merchant: Merchant, history: list[Payment]
) -> None:
    filters = PaymentFilters(reference="order-2")
    first = await list_payments(uow_factory, merchant, PaymentListQuery(limit=3, filters=filters))
    rest = await list_payments(
        uow_factory,
        merchant,
        PaymentListQuery(limit=3, starting_after=first.payments[-1].id, filters=filters),
    )

    expected = [p for p in history if p.reference == "order-2"][::-1]  # 22, 17, 12, 7, 2
    assert ids(first.payments + rest.payments) == ids(expected)
    assert (first.has_more, rest.has_more) == (True, False)


async def test_only_the_callers_payments_and_never_another_merchants_as_a_cursor(
    store: FakeStore,
    uow_factory: FakeUnitOfWorkFactory,
    merchant: Merchant,
    other_merchant: Merchant,
    history: list[Payment],
) -> None:
    theirs = add_payment(store, other_merchant, 1, created_at=T0 + timedelta(hours=1))

    mine = await list_payments(uow_factory, merchant, PaymentListQuery(limit=100))
    assert theirs.id not in ids(mine.payments)
    assert len(mine.payments) == 25

    for parameter in ("starting_after", "ending_before"):
        foreign = PaymentListQuery(**{parameter: history[3].id})  # type: ignore[arg-type]
        unknown = PaymentListQuery(**{parameter: "no-such-id"})  # type: ignore[arg-type]
        with pytest.raises(NotFound) as foreign_refused:
            await list_payments(uow_factory, other_merchant, foreign)
        with pytest.raises(NotFound) as unknown_refused:
            await list_payments(uow_factory, other_merchant, unknown)
        # The same answer as for an id that does not exist: nothing reveals it does.
        assert foreign_refused.value.errors == unknown_refused.value.errors
        assert [e.field for e in foreign_refused.value.errors] == [parameter]
        assert foreign_refused.value.detail == f"no payment {history[3].id}"
        assert unknown_refused.value.detail == "no payment no-such-id"


async def test_an_empty_listing(uow_factory: FakeUnitOfWorkFactory, merchant: Merchant) -> None:
    page = await list_payments(uow_factory, merchant, PaymentListQuery())
    assert (page.payments, page.has_more) == ([], False)


async def test_exactly_a_page_has_no_more(
    store: FakeStore, uow_factory: FakeUnitOfWorkFactory, merchant: Merchant
) -> None:
    for n in range(10):
        add_payment(store, merchant, n, created_at=T0 + timedelta(seconds=n))
    page = await list_payments(uow_factory, merchant, PaymentListQuery(limit=10))
    assert len(page.payments) == 10
    assert not page.has_more


@pytest.mark.parametrize("limit", [0, 101, -1])
async def test_a_limit_outside_1_to_100_is_refused(
    uow_factory: FakeUnitOfWorkFactory, merchant: Merchant, limit: int
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        await list_payments(uow_factory, merchant, PaymentListQuery(limit=limit))
    assert [e.field for e in refused.value.errors] == ["limit"]


@pytest.mark.parametrize("limit", [1, 100])
async def test_limits_at_the_bounds_are_taken(
    uow_factory: FakeUnitOfWorkFactory, merchant: Merchant, history: list[Payment], limit: int
) -> None:
    page = await list_payments(uow_factory, merchant, PaymentListQuery(limit=limit))
    assert len(page.payments) == min(limit, 25)
    assert page.has_more is (limit < 25)


async def test_both_cursors_at_once_are_refused_naming_both(
    uow_factory: FakeUnitOfWorkFactory, merchant: Merchant, history: list[Payment]
) -> None:
    query = PaymentListQuery(starting_after=history[1].id, ending_before=history[5].id)
    with pytest.raises(InvalidRequest) as refused:
        await list_payments(uow_factory, merchant, query)
    assert [e.field for e in refused.value.errors] == ["starting_after", "ending_before"]


async def test_the_cursor_need_not_match_the_filters(
    uow_factory: FakeUnitOfWorkFactory, merchant: Merchant, history: list[Payment]
) -> None:
    # history[11] is processing; the page after it still lists the succeeded ones below it.
    assert history[11].status is PaymentStatus.PROCESSING
    query = PaymentListQuery(
        limit=2,
        starting_after=history[11].id,
        filters=PaymentFilters(status=PaymentStatus.SUCCEEDED),
    )
    page = await list_payments(uow_factory, merchant, query)
    assert ids(page.payments) == [history[9].id, history[6].id]


async def test_a_status_change_moves_a_payment_between_filtered_listings(
    store: FakeStore, uow_factory: FakeUnitOfWorkFactory, merchant: Merchant
) -> None:
    payment = add_payment(store, merchant, 1, created_at=T0, status=PaymentStatus.PROCESSING)
    succeeded = PaymentListQuery(filters=PaymentFilters(status=PaymentStatus.SUCCEEDED))
    assert (await list_payments(uow_factory, merchant, succeeded)).payments == []

    row = store.payments[payment.id]
    row.payment = replace(row.payment, status=PaymentStatus.SUCCEEDED)
    assert ids((await list_payments(uow_factory, merchant, succeeded)).payments) == [payment.id]
