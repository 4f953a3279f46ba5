"""How a statement is compiled for the driver: the values SQLAlchemy would bind, in order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from payment_gateway.domain.payment import PaymentStatus
from payment_gateway.storage.bulk_writes import driver_statement
from payment_gateway.storage.repositories import _guarded_update, _insert_payment
from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, insert, update
from sqlalchemy.dialects.mysql.asyncmy import dialect as asyncmy_dialect

DIALECT = asyncmy_dialect()
PARIS = timezone(timedelta(hours=1))


def test_an_insert_binds_each_rows_values_in_the_order_of_its_sql() -> None:
    created = datetime(2026, 12, 7, 19, 30, 0, 123456, tzinfo=PARIS)
    row: dict[str, object] = {"id": "p-1", "merchant_id": "m-1", "card_id": "c-1"}
    row |= {"status": "init", "amount": 1000, "currency": "EUR", "capture": False}
    row |= {"created_at": created, "updated_at": created, "next_attempt_at": created}
    row |= {"attempts": 0}

    compiled = driver_statement(_insert_payment, DIALECT, frozenset(row))
    [values] = compiled.bind([row])

    assert compiled.sql.startswith("INSERT INTO payments (id, merchant_id, card_id, status,")
    assert compiled.sql.count("%s") == len(values) == len(row)
    columns = compiled.sql.split("(", 1)[1].split(")", 1)[0].split(", ")
    bound = dict(zip(columns, values, strict=True))
    # Timestamps are stored as naive UTC (UTCDateTime).
    assert bound["created_at"] == datetime(2026, 12, 7, 18, 30, 0, 123456)
    assert bound["created_at"].tzinfo is None
    assert bound["capture"] == 0  # MySQL has no boolean: the dialect binds 0
    assert bound["amount"] == 1000


def test_an_update_binds_its_own_values_beside_each_rows() -> None:
    statement = _guarded_update(PaymentStatus.SUCCEEDED, frozenset({"three_d_secure"}))
    at = datetime(2026, 12, 7, 18, 0, tzinfo=UTC)
    rows = [
        {"payment_id": payment_id, "code": "0", "decline_reason": None, "updated_at": at}
        | {"next_attempt_at": None, "tracking_id": f"t-{payment_id}"}
        for payment_id in ("p-1", "p-2")
    ]

    compiled = driver_statement(statement, DIALECT, frozenset(rows[0]))

    assert compiled.sql.startswith("UPDATE payments SET status=%s")
    first, second = compiled.bind(rows)
    assert first[0] == second[0] == "succeeded"  # the statement's value, in every row
    assert first[-1] == "p-1"
    assert second[-1] == "p-2"  # WHERE id = %s comes last
    assert datetime(2026, 12, 7, 18, 0) in first


def test_a_statement_needing_more_of_sqlalchemys_execution_is_refused() -> None:
    table = Table(
        "things",
        MetaData(),
        Column("id", String(36), primary_key=True),
        Column("count", Integer(), default=0),  # computed per row by SQLAlchemy
    )
    with pytest.raises(ValueError, match="not a plain positional statement"):
        driver_statement(insert(table), DIALECT, frozenset({"id"}))
    needs_a_value = update(table).values(count=bindparam("count_value"))
    with pytest.raises(ValueError, match="no value for parameter 'count_value'"):
        driver_statement(needs_a_value, DIALECT, frozenset({"id"}))
