"""Use case: list a merchant's payments, newest first, a page at a time.

Pages are keyset-paginated on (created_at, id), as Stripe's lists are: ``starting_after``
gives the page of payments older than that one, ``ending_before`` the page newer than it
(still shown newest first); ``has_more`` says whether more lie further that way. A cursor
is a payment id of the caller's own: any other id, another merchant's included, is
answered like one that does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from payment_gateway import audit
from payment_gateway.domain.merchant import Merchant
from payment_gateway.domain.payment import Payment
from payment_gateway.service.errors import FieldError, InvalidRequest, NotFound
from payment_gateway.service.ports import (
    ListPosition,
    PaymentFilters,
    PaymentRepository,
    UnitOfWorkFactory,
)

DEFAULT_LIMIT = 10
MAX_LIMIT = 100


@dataclass(frozen=True, slots=True)
class PaymentListQuery:
    limit: int = DEFAULT_LIMIT
    starting_after: str | None = None  # a payment id: the page of older payments
    ending_before: str | None = None  # a payment id: the page of newer payments
    filters: PaymentFilters = field(default_factory=PaymentFilters)


@dataclass(frozen=True, slots=True)
class PaymentPage:
    payments: list[Payment]  # newest first
    has_more: bool  # more payments lie beyond this page, in the direction paged


async def list_payments(
    uow_factory: UnitOfWorkFactory, merchant: Merchant, query: PaymentListQuery
) -> PaymentPage:
    _check(query)
    async with uow_factory(read_only=True, single_statement=True) as uow:
        older_than = newer_than = None
        if query.starting_after is not None:
            older_than = await _position(
                uow.payments, merchant, "starting_after", query.starting_after
            )
        if query.ending_before is not None:
            newer_than = await _position(
                uow.payments, merchant, "ending_before", query.ending_before
            )
        # One row more than asked for tells whether there are more.
        found = await uow.payments.list_page(
            merchant.id,
            query.filters,
            query.limit + 1,
            older_than=older_than,
            newer_than=newer_than,
        )
    page = found[: query.limit]
    if newer_than is not None:
        page.reverse()  # fetched oldest first, from the cursor on
    audit.record("payments_listed", merchant_id=merchant.id, count=len(page))
    return PaymentPage(page, has_more=len(found) > query.limit)


def check_one_cursor(starting_after: str | None, ending_before: str | None) -> None:
    """A page is taken one way: 422 naming both cursors when both are given."""
    if starting_after is not None and ending_before is not None:
        message = "give either starting_after or ending_before, not both"
        raise InvalidRequest(
            "the request is invalid: see errors",
            errors=[FieldError("starting_after", message), FieldError("ending_before", message)],
        )


def _check(query: PaymentListQuery) -> None:
    check_one_cursor(query.starting_after, query.ending_before)
    if not 1 <= query.limit <= MAX_LIMIT:
        raise InvalidRequest(
            "the request is invalid: see errors",
            errors=[FieldError("limit", f"must be between 1 and {MAX_LIMIT}")],
        )


async def _position(
    payments: PaymentRepository, merchant: Merchant, parameter: str, payment_id: str
) -> ListPosition:
    payment = await payments.get(payment_id, merchant.id)
    if payment is None:
        raise NotFound(
            f"no payment {payment_id}", errors=[FieldError(parameter, "no such payment")]
        )
    return ListPosition(payment.created_at, payment.id)
