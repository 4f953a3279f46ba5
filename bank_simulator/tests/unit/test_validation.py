"""Malformed deposits: 422/413/415 problem+json naming the field, never a 500, nothing recorded."""

from __future__ import annotations

import asyncio
import json
import string
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from bank_simulator.app import create_app
from bank_simulator.config import Settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ..conftest import BankClient, MakeDepositBody


def _without(body: dict[str, Any], *path: str) -> dict[str, Any]:
    target = body
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return body


def _card(body: dict[str, Any], **changes: object) -> dict[str, Any]:
    body["card"] |= changes
    return body


def _set(body: dict[str, Any], **changes: object) -> dict[str, Any]:
    return body | changes


CASES = {
    "number-letters": (lambda b: _card(b, number="4242abcd42424242"), "card.number"),
    "number-short": (lambda b: _card(b, number="42424242424"), "card.number"),
    "number-long": (lambda b: _card(b, number="4" * 20), "card.number"),
    "number-spaces": (lambda b: _card(b, number="4242 4242 4242 4242"), "card.number"),
    "number-int": (lambda b: _card(b, number=4242424242424242), "card.number"),
    "number-unicode-digits": (lambda b: _card(b, number="٤" * 16), "card.number"),
    "number-missing": (lambda b: _without(b, "card", "number"), "card.number"),
    "expiry-no-slash": (lambda b: _card(b, expiry="122042"), "card.expiry"),
    "expiry-month-13": (lambda b: _card(b, expiry="13/2042"), "card.expiry"),
    "expiry-short-year": (lambda b: _card(b, expiry="12/42"), "card.expiry"),
    "expiry-trailing-newline": (lambda b: _card(b, expiry="12/2042\n"), "card.expiry"),
    "cvv-short": (lambda b: _card(b, cvv="12"), "card.cvv"),
    "cvv-long": (lambda b: _card(b, cvv="12345"), "card.cvv"),
    "cvv-int": (lambda b: _card(b, cvv=123), "card.cvv"),
    "holder-too-long": (lambda b: _card(b, holder_name="x" * 101), "card.holder_name"),
    "holder-nul": (lambda b: _card(b, holder_name="John\x00"), "card.holder_name"),
    "holder-escape": (lambda b: _card(b, holder_name="\x1b[2JJohn"), "card.holder_name"),
    "holder-crlf": (lambda b: _card(b, holder_name="John\r\nDoe"), "card.holder_name"),
    "holder-bidi-override": (lambda b: _card(b, holder_name="John\u202eDoe"), "card.holder_name"),
    "holder-bidi-isolate": (lambda b: _card(b, holder_name="\u2066John"), "card.holder_name"),
    "card-unknown-field": (lambda b: _card(b, pin="1234"), "card.pin"),
    "card-not-object": (lambda b: _set(b, card="4242424242424242"), "card"),
    "amount-string": (lambda b: _set(b, amount="1000"), "amount"),
    "amount-float": (lambda b: _set(b, amount=1000.0), "amount"),
    "amount-bool": (lambda b: _set(b, amount=True), "amount"),
    "amount-zero": (lambda b: _set(b, amount=0), "amount"),
    "amount-negative": (lambda b: _set(b, amount=-5), "amount"),
    "amount-over-int64": (lambda b: _set(b, amount=2**63), "amount"),
    "amount-huge": (lambda b: _set(b, amount=10**40), "amount"),
    "amount-null": (lambda b: _set(b, amount=None), "amount"),
    "currency-lower": (lambda b: _set(b, currency="usd"), "currency"),
    "currency-long": (lambda b: _set(b, currency="USDX"), "currency"),
    "reference-empty": (lambda b: _set(b, reference=""), "reference"),
    "reference-too-long": (lambda b: _set(b, reference="r" * 65), "reference"),
    "reference-int": (lambda b: _set(b, reference=42), "reference"),
    "reference-missing": (lambda b: _without(b, "reference"), "reference"),
    "unknown-field": (lambda b: _set(b, tip=5), "tip"),
    "capture-string": (lambda b: _set(b, capture="false"), "capture"),
    "capture-int": (lambda b: _set(b, capture=0), "capture"),
    "capture-null": (lambda b: _set(b, capture=None), "capture"),
}


@pytest.mark.parametrize(("mutate", "field"), CASES.values(), ids=CASES.keys())
async def test_invalid_field_is_named(
    client: BankClient,
    deposit_body: MakeDepositBody,
    mutate: Callable[[dict[str, Any]], dict[str, Any]],
    field: str,
) -> None:
    response = await client.post("/api/v1/deposit", json=mutate(deposit_body("bad")))

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422
    assert problem["title"]
    assert problem["type"]
    assert field in problem["detail"]
    assert [e["field"] for e in problem["errors"]] == [field]
    assert all(e["message"] for e in problem["errors"])
    assert len(client.ledger) == 0


async def test_every_invalid_field_is_listed(
    client: BankClient, deposit_body: MakeDepositBody
) -> None:
    body = deposit_body(reference="", number="x", amount="1", currency="usd", cvv="1")
    response = await client.post("/api/v1/deposit", json=body)
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {"reference", "card.number", "card.cvv", "amount", "currency"}


async def test_errors_never_echo_the_card_number_or_cvv(
    client: BankClient, deposit_body: MakeDepositBody
) -> None:
    body = deposit_body(number="4242424242424242x", cvv="98765")
    response = await client.post("/api/v1/deposit", json=body)
    assert response.status_code == 422
    assert "4242424242424242" not in response.text
    assert "98765" not in response.text


@pytest.mark.parametrize(
    "content",
    [b"", b"{", b'{"reference": "a",}', b"not json", b"[]", b"null", b"42", b'"x"', b"\xff\xfe"],
    ids=[
        "empty",
        "truncated",
        "trailing-comma",
        "text",
        "array",
        "null",
        "number",
        "string",
        "bad-utf8",
    ],
)
async def test_malformed_json_is_422(client: BankClient, content: bytes) -> None:
    response = await client.post(
        "/api/v1/deposit", content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["field"] == "body"


async def test_missing_content_type_is_read_as_json(
    client: BankClient, deposit_body: MakeDepositBody
) -> None:
    response = await client.post("/api/v1/deposit", content=json.dumps(deposit_body()).encode())
    assert response.status_code == 201


async def test_json_with_charset_and_vendor_types_accepted(
    client: BankClient, deposit_body: MakeDepositBody
) -> None:
    for i, content_type in enumerate(["application/json; charset=utf-8", "application/x+json"]):
        response = await client.post(
            "/api/v1/deposit",
            content=json.dumps(deposit_body(f"r{i}")).encode(),
            headers={"content-type": content_type},
        )
        assert response.status_code == 201


async def test_non_json_content_type_is_415(
    client: BankClient, deposit_body: MakeDepositBody
) -> None:
    response = await client.post(
        "/api/v1/deposit",
        data={"reference": "a"},  # form-encoded
    )
    assert response.status_code == 415
    assert response.headers["content-type"] == "application/problem+json"


async def test_oversized_body_is_413(client: BankClient, deposit_body: MakeDepositBody) -> None:
    body = deposit_body(holder_name="x" * 70_000)
    response = await client.post("/api/v1/deposit", json=body)
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"


async def test_unknown_route_and_wrong_method_are_problems(client: BankClient) -> None:
    not_found = await client.get("/api/v1/nothing")
    assert not_found.status_code == 404
    assert not_found.headers["content-type"] == "application/problem+json"
    wrong_method = await client.get("/api/v1/deposit")
    assert wrong_method.status_code == 405
    assert wrong_method.headers["allow"] == "POST"
    assert wrong_method.json()["status"] == 405


def _operation(**changes: object) -> dict[str, object]:
    return {"reference": "op-1", "deposit_reference": "ref-1", "amount": 10} | changes


OPERATION_CASES = {
    "amount-zero": (_operation(amount=0), "amount"),
    "amount-negative": (_operation(amount=-1), "amount"),
    "amount-string": (_operation(amount="10"), "amount"),
    "amount-float": (_operation(amount=10.0), "amount"),
    "amount-bool": (_operation(amount=True), "amount"),
    "amount-over-int64": (_operation(amount=2**63), "amount"),
    "reference-empty": (_operation(reference=""), "reference"),
    "reference-too-long": (_operation(reference="r" * 65), "reference"),
    "reference-int": (_operation(reference=7), "reference"),
    "deposit-reference-missing": (
        {"reference": "op-1", "amount": 10},
        "deposit_reference",
    ),
    "deposit-reference-null": (_operation(deposit_reference=None), "deposit_reference"),
    "unknown-field": (_operation(kind="refund"), "kind"),
}


@pytest.mark.parametrize("collection", ["captures", "voids", "refunds"])
@pytest.mark.parametrize(("body", "field"), OPERATION_CASES.values(), ids=OPERATION_CASES.keys())
async def test_invalid_operation_field_is_named(
    client: BankClient,
    deposit_body: MakeDepositBody,
    collection: str,
    body: dict[str, object],
    field: str,
) -> None:
    capture = collection == "refunds"
    assert (await client.post("/api/v1/deposit", json=deposit_body(capture=capture))).is_success

    response = await client.post(f"/api/v1/{collection}", json=body)

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in response.json()["errors"]] == [field]
    assert len(client.ledger) == 1  # the deposit only
    assert (await client.get("/api/v1/deposits/ref-1")).json()["refunded_amount"] == 0


@pytest.mark.parametrize("collection", ["captures", "refunds"])
async def test_captures_and_refunds_need_an_amount(client: BankClient, collection: str) -> None:
    response = await client.post(
        f"/api/v1/{collection}", json={"reference": "op", "deposit_reference": "d"}
    )
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["amount"]


@pytest.mark.parametrize("collection", ["captures", "voids", "refunds"])
async def test_operations_refuse_bad_bodies_like_deposits(
    client: BankClient, collection: str
) -> None:
    path = f"/api/v1/{collection}"
    broken = await client.post(path, content=b"{", headers={"content-type": "application/json"})
    assert (broken.status_code, broken.json()["errors"][0]["field"]) == (422, "body")
    form = await client.post(path, data={"reference": "a"})
    assert form.status_code == 415
    huge = await client.post(path, json=_operation(reference="x" * 70_000))
    assert huge.status_code == 413
    assert {r.headers["content-type"] for r in (broken, form, huge)} == {"application/problem+json"}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
field_values = st.one_of(
    json_values,
    st.text(string.digits, min_size=0, max_size=21),
    st.sampled_from(["4242424242424242", "12/2042", "USD", "123"]),
)
deposit_like = st.fixed_dictionaries(
    {},
    optional={
        "reference": field_values,
        "amount": field_values,
        "currency": field_values,
        "card": st.fixed_dictionaries(
            {},
            optional=dict.fromkeys(["number", "expiry", "cvv", "holder_name"], field_values),
        )
        | json_values,
        "extra": json_values,
    },
)


def test_no_input_gives_a_500() -> None:
    app = create_app(Settings())
    with asyncio.Runner() as runner:
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://bank.test"
        )

        @settings(
            max_examples=300,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        )
        @given(body=deposit_like | json_values)
        def check(body: object) -> None:
            response = runner.run(client.post("/api/v1/deposit", content=json.dumps(body)))
            assert response.status_code in {201, 200, 409, 422}
            if response.status_code >= 400:
                assert response.headers["content-type"] == "application/problem+json"

        try:
            check()
        finally:
            runner.run(client.aclose())


operation_like = st.fixed_dictionaries(
    {},
    optional=dict.fromkeys(["reference", "deposit_reference", "amount", "extra"], field_values),
)


@pytest.mark.parametrize("collection", ["captures", "voids", "refunds"])
def test_no_operation_input_gives_a_500(collection: str) -> None:
    app = create_app(Settings())
    with asyncio.Runner() as runner:
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://bank.test"
        )
        for reference, capture in [("ref-1", False), ("ref-2", True)]:
            deposit = {
                "reference": reference,
                "card": {"number": "4242424242424242", "expiry": "12/2042", "cvv": "123"},
                "amount": 1000,
                "currency": "USD",
                "capture": capture,
            }
            runner.run(client.post("/api/v1/deposit", json=deposit))

        @settings(
            max_examples=150,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        )
        @given(
            body=operation_like
            | json_values
            | st.fixed_dictionaries(
                {
                    "reference": st.text(min_size=1, max_size=64),
                    "deposit_reference": st.sampled_from(["ref-1", "ref-2", "ref-3"]),
                    "amount": st.integers(min_value=-5, max_value=2000),
                }
            )
        )
        def check(body: object) -> None:
            response = runner.run(client.post(f"/api/v1/{collection}", content=json.dumps(body)))
            assert response.status_code in {201, 200, 404, 409, 422}
            if response.status_code >= 400:
                assert response.headers["content-type"] == "application/problem+json"

        try:
            check()
        finally:
            runner.run(client.aclose())
