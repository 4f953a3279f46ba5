"""3-D Secure through the API (POST/GET /api/v1/3ds/authentications) and deposits of enrolled
cards, in process. The challenge page itself: test_challenge_page.py."""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from ..conftest import BankClient, ClientFactory, MakeDepositBody

CHALLENGE = "4000000000003220"
CHALLENGE_EVERY_TIME = "4000002760003184"
CHALLENGE_THEN_DECLINED = "4000008400001629"
FRICTIONLESS = "4000000000003055"
NOT_ENROLLED = "4242424242424242"
ENROLLED = [CHALLENGE, CHALLENGE_EVERY_TIME, CHALLENGE_THEN_DECLINED, FRICTIONLESS]
PUBLIC_URL = "https://bank.example"
RETURN_URL = "https://gateway.example/3ds/return?payment=p1"


def auth_body(
    reference: str = "auth-1",
    number: str = CHALLENGE,
    amount: object = 1000,
    currency: str = "EUR",
    return_url: object = RETURN_URL,
    **card: object,
) -> dict[str, Any]:
    return {
        "reference": reference,
        "card": {"number": number, "expiry": "12/2042", "holder_name": "John Doe"} | card,
        "amount": amount,
        "currency": currency,
        "return_url": return_url,
    }


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


async def authenticate(client: BankClient, **changes: Any) -> dict[str, Any]:
    response = await client.post("/api/v1/3ds/authentications", json=auth_body(**changes))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def answer(client: BankClient, authentication: dict[str, Any], **form: str) -> httpx.Response:
    """Answer the challenge as the shopper's browser does: read the page, post its form."""
    page = await client.get(authentication["challenge_url"])
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match is not None, page.text
    return await client.post(authentication["challenge_url"], data={"csrf_token": match[1]} | form)


async def state(client: BankClient, reference: str) -> dict[str, Any]:
    response = await client.get(f"/api/v1/3ds/authentications/{reference}")
    assert response.status_code == 200, response.text
    current: dict[str, Any] = response.json()
    return current


@pytest.fixture
async def client(make_client: ClientFactory) -> AsyncIterator[BankClient]:
    async with make_client(public_url=PUBLIC_URL) as c:
        yield c


# --- authentications ------------------------------------------------------------------------


@pytest.mark.parametrize("number", [CHALLENGE, CHALLENGE_EVERY_TIME, CHALLENGE_THEN_DECLINED])
async def test_a_challenge_card_needs_a_challenge(client: BankClient, number: str) -> None:
    response = await client.post("/api/v1/3ds/authentications", json=auth_body(number=number))

    assert response.status_code == 201
    assert response.headers["location"] == "/api/v1/3ds/authentications/auth-1"
    body = response.json()
    assert uuid.UUID(body["id"]).version == 4
    assert body == {
        "id": body["id"],
        "reference": "auth-1",
        "status": "challenge_required",
        "flow": "challenge",
        "challenge_url": f"{PUBLIC_URL}/3ds/challenge/{body['id']}",
        "eci": None,
        "version": "2.2.0",
        "failure_reason": None,
    }
    assert await state(client, "auth-1") == body


async def test_a_frictionless_card_is_authenticated_at_once(client: BankClient) -> None:
    body = await authenticate(client, number=FRICTIONLESS)
    assert body == {
        "id": body["id"],
        "reference": "auth-1",
        "status": "authenticated",
        "flow": "frictionless",
        "challenge_url": None,
        "eci": "05",
        "version": "2.2.0",
        "failure_reason": None,
    }
    assert (await client.get(f"/3ds/challenge/{body['id']}")).status_code == 404


@pytest.mark.parametrize("number", [NOT_ENROLLED, "5555555555554444", "4000000000000002"])
async def test_any_other_card_is_not_enrolled(client: BankClient, number: str) -> None:
    body = await authenticate(client, number=number)
    assert (body["status"], body["flow"], body["challenge_url"], body["eci"]) == (
        "not_enrolled",
        None,
        None,
        None,
    )
    assert body["version"] == "2.2.0"


async def test_the_challenge_card_that_challenges_every_time_does(client: BankClient) -> None:
    for i in range(3):
        first = await authenticate(client, reference=f"a{i}", number=CHALLENGE_EVERY_TIME)
        assert first["status"] == "challenge_required"
        assert (await answer(client, first, code="1234")).status_code == 303
        assert (await state(client, f"a{i}"))["status"] == "authenticated"


async def test_the_right_code_authenticates(client: BankClient) -> None:
    created = await authenticate(client)
    redirect = await answer(client, created, code="1234")

    assert redirect.status_code == 303
    assert redirect.headers["location"] == RETURN_URL
    assert await state(client, "auth-1") == created | {"status": "authenticated", "eci": "05"}


@pytest.mark.parametrize(
    ("form", "reason"),
    [
        ({"code": "0000"}, "wrong_code"),
        ({"code": ""}, "wrong_code"),
        ({"code": " 1234"}, "wrong_code"),
        ({}, "wrong_code"),
        ({"action": "cancel"}, "canceled"),
        ({"action": "cancel", "code": "1234"}, "canceled"),
    ],
)
async def test_a_wrong_code_or_cancel_fails_it(
    client: BankClient, form: dict[str, str], reason: str
) -> None:
    created = await authenticate(client)
    redirect = await answer(client, created, **form)

    assert (redirect.status_code, redirect.headers["location"]) == (303, RETURN_URL)
    assert await state(client, "auth-1") == created | {"status": "failed", "failure_reason": reason}


async def test_a_finished_challenge_never_changes(client: BankClient) -> None:
    failed = await authenticate(client, reference="f")
    await answer(client, failed, code="9999")
    passed = await authenticate(client, reference="p")
    await answer(client, passed, code="1234")
    before = [await state(client, "f"), await state(client, "p")]

    for authentication in (failed, passed):
        stored = client.ledger.authentication_by_id(authentication["id"])
        assert stored is not None
        for form in ({"code": "1234"}, {"action": "cancel"}, {"code": "0"}):
            # The form as the browser still has it (Back, then Submit again): a valid token.
            replay = await client.post(
                authentication["challenge_url"], data={"csrf_token": stored.csrf_token} | form
            )
            assert replay.status_code == 409
            assert "already complete" in replay.text

    assert [await state(client, "f"), await state(client, "p")] == before
    assert before[0]["status"] == "failed"
    assert before[1]["status"] == "authenticated"


async def test_repeat_returns_the_same_authentication_with_200(client: BankClient) -> None:
    created = await authenticate(client)
    # holder_name and expiry are not part of the comparison; card, amount, currency are.
    retry = auth_body(holder_name=None, expiry="01/2030")
    repeat = await client.post("/api/v1/3ds/authentications", json=retry)
    assert (repeat.status_code, repeat.json()) == (200, created)

    await answer(client, created, code="1234")
    later = await client.post("/api/v1/3ds/authentications", json=auth_body())
    assert later.status_code == 200
    assert later.json() == created | {"status": "authenticated", "eci": "05"}
    assert len(client.ledger) == 1


@pytest.mark.parametrize(
    "change",
    [
        {"number": CHALLENGE_EVERY_TIME},
        {"amount": 1001},
        {"currency": "USD"},
        {"return_url": "https://gateway.example/other"},
    ],
    ids=["card", "amount", "currency", "return_url"],
)
async def test_reusing_a_reference_for_another_authentication_is_409(
    client: BankClient, change: dict[str, Any]
) -> None:
    created = await authenticate(client)
    conflict = await client.post("/api/v1/3ds/authentications", json=auth_body(**change))

    body = assert_problem(conflict, 409)
    assert body["type"] == "urn:bank-simulator:problem:reference-conflict"
    assert body["errors"] == [{"field": "reference", "message": "already used for another request"}]
    assert await state(client, "auth-1") == created


async def test_an_authentication_and_a_deposit_may_share_a_reference(
    client: BankClient, deposit_body: MakeDepositBody
) -> None:
    authentication = await authenticate(
        client, reference="p-1", number=FRICTIONLESS, currency="USD"
    )
    deposit = with_3ds(deposit_body("p-1", FRICTIONLESS), authentication["id"])
    created = await client.post("/api/v1/deposit", json=deposit)
    assert (created.status_code, created.json()["status"]) == (201, "succeeded")
    assert await state(client, "p-1") == authentication


async def test_concurrent_duplicates_make_one_authentication(
    make_client: ClientFactory,
) -> None:
    async with make_client(latency_ms=20) as client:
        responses = await asyncio.gather(
            *(client.post("/api/v1/3ds/authentications", json=auth_body()) for _ in range(30))
        )
    assert sorted(r.status_code for r in responses) == [200] * 29 + [201]
    assert len({r.json()["id"] for r in responses}) == 1


async def test_unknown_reference_is_404(client: BankClient) -> None:
    body = assert_problem(await client.get("/api/v1/3ds/authentications/never"), 404)
    assert body["type"] == "urn:bank-simulator:problem:authentication-not-found"


async def test_a_reference_with_a_slash_can_be_read_back(client: BankClient) -> None:
    created = await client.post("/api/v1/3ds/authentications", json=auth_body("shop/42 ä"))
    assert created.headers["location"] == "/api/v1/3ds/authentications/shop%2F42%20%C3%A4"
    assert (await client.get(created.headers["location"])).json() == created.json()


MALFORMED = {
    "number-letters": ({"number": "4000abcd00003220"}, "card.number"),
    "expiry": ({"expiry": "12/42"}, "card.expiry"),
    "cvv-is-never-part-of-it": ({"cvv": "123"}, "card.cvv"),
    "holder-control-character": ({"holder_name": "John\x1b"}, "card.holder_name"),
    "amount-zero": ({"amount": 0}, "amount"),
    "amount-string": ({"amount": "10"}, "amount"),
    "currency": ({"currency": "eur"}, "currency"),
    "reference-long": ({"reference": "r" * 65}, "reference"),
    "return-url-relative": ({"return_url": "/3ds/return"}, "return_url"),
    "return-url-scheme": ({"return_url": "javascript:alert(1)"}, "return_url"),
    "return-url-ftp": ({"return_url": "ftp://gateway.example/x"}, "return_url"),
    "return-url-userinfo": ({"return_url": "https://user@gateway.example/"}, "return_url"),
    "return-url-space": ({"return_url": "https://gateway.example/a b"}, "return_url"),
    "return-url-csp-injection": ({"return_url": "https://a;script-src *"}, "return_url"),
    "return-url-long": ({"return_url": "https://g.example/" + "a" * 2048}, "return_url"),
    "return-url-not-string": ({"return_url": 5}, "return_url"),
}


@pytest.mark.parametrize(("change", "field"), MALFORMED.values(), ids=MALFORMED.keys())
async def test_a_malformed_authentication_is_422_naming_the_field(
    client: BankClient, change: dict[str, Any], field: str
) -> None:
    card = {k: v for k, v in change.items() if k in {"number", "expiry", "cvv", "holder_name"}}
    top = {k: v for k, v in change.items() if k not in card}
    body = auth_body(**card) | top

    problem = assert_problem(await client.post("/api/v1/3ds/authentications", json=body), 422)
    assert [error["field"] for error in problem["errors"]] == [field]
    assert len(client.ledger) == 0
    assert "4000abcd00003220" not in str(problem)


@pytest.mark.parametrize("missing", ["reference", "card", "amount", "currency", "return_url"])
async def test_every_top_level_field_is_required(client: BankClient, missing: str) -> None:
    body = auth_body()
    del body[missing]
    problem = assert_problem(await client.post("/api/v1/3ds/authentications", json=body), 422)
    assert [error["field"] for error in problem["errors"]] == [missing]


async def test_non_json_and_oversized_bodies(make_client: ClientFactory) -> None:
    async with make_client(max_body_bytes=1024) as client:
        url = "/api/v1/3ds/authentications"
        assert_problem(
            await client.post(url, content=b"x", headers={"content-type": "text/plain"}), 415
        )
        big = auth_body(holder_name="x" * 100) | {"padding": "x" * 2000}
        assert_problem(await client.post(url, json=big), 413)


async def test_bearer_key_is_required(make_client: ClientFactory) -> None:
    async with make_client(bank_api_key="k" * 32, public_url=PUBLIC_URL) as client:
        refused = await client.post("/api/v1/3ds/authentications", json=auth_body())
        assert_problem(refused, 401)
        assert_problem(await client.get("/api/v1/3ds/authentications/auth-1"), 401)
        headers = {"Authorization": "Bearer " + "k" * 32}
        created = await client.post(
            "/api/v1/3ds/authentications", json=auth_body(), headers=headers
        )
        assert created.status_code == 201
        # The challenge page is for the shopper's browser: no key.
        page = await client.get(created.json()["challenge_url"])
        assert page.status_code == 200


async def test_failure_rate_one_answers_503_and_records_nothing(
    make_client: ClientFactory,
) -> None:
    async with make_client(failure_rate=1.0) as client:
        response = await client.post("/api/v1/3ds/authentications", json=auth_body())
        assert_problem(response, 503)
        assert response.headers["retry-after"] == "1"
        assert len(client.ledger) == 0


async def test_authentications_count_toward_the_bound(
    make_client: ClientFactory, deposit_body: MakeDepositBody
) -> None:
    async with make_client(max_transactions=2) as client:
        first = await authenticate(client, reference="a")
        await client.post("/api/v1/deposit", json=deposit_body("d"))
        await authenticate(client, reference="b")
        assert len(client.ledger) == 2
        assert (await client.get("/api/v1/3ds/authentications/a")).status_code == 404
        assert (await client.get(first["challenge_url"])).status_code == 404
        assert client.ledger.authentication_by_id(first["id"]) is None
        assert (await client.get("/api/v1/deposits/d")).status_code == 200


async def test_the_card_number_is_never_logged_or_kept(
    client: BankClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    created = await authenticate(client, reference="log-me")
    await answer(client, created, code="1234")

    assert "log-me" in caplog.text
    assert CHALLENGE not in caplog.text
    assert "1234" not in caplog.text.replace(created["id"], "")
    stored = client.ledger.authentication("log-me")
    assert stored is not None
    assert CHALLENGE not in repr(stored)
    assert stored.last4 == "3220"


# --- deposits of enrolled cards -----------------------------------------------------------


def with_3ds(body: dict[str, Any], authentication_id: str) -> dict[str, Any]:
    return body | {"three_d_secure": {"authentication_id": authentication_id}}


@pytest.mark.parametrize("number", ENROLLED)
async def test_an_enrolled_card_without_authentication_is_declined(
    client: BankClient, deposit_body: MakeDepositBody, number: str
) -> None:
    response = await client.post("/api/v1/deposit", json=deposit_body("d", number))
    assert response.status_code == 201
    body = response.json()
    assert (body["status"], body["code"], body["reason"]) == (
        "failed",
        "100",
        "authentication_required",
    )


@pytest.mark.parametrize(
    ("number", "status", "reason"),
    [
        (CHALLENGE, "succeeded", None),
        (CHALLENGE_EVERY_TIME, "succeeded", None),
        (CHALLENGE_THEN_DECLINED, "failed", "card_declined"),
    ],
)
async def test_a_challenged_card_gets_its_outcome_once_authenticated(
    client: BankClient,
    deposit_body: MakeDepositBody,
    number: str,
    status: str,
    reason: str | None,
) -> None:
    authentication = await authenticate(client, number=number, currency="USD")
    early = with_3ds(deposit_body("early", number), authentication["id"])
    assert (await client.post("/api/v1/deposit", json=early)).json()["reason"] == (
        "authentication_required"
    )

    await answer(client, authentication, code="1234")
    deposit = with_3ds(deposit_body("d", number), authentication["id"])
    body = (await client.post("/api/v1/deposit", json=deposit)).json()

    assert (body["status"], body["reason"]) == (status, reason)
    assert body["code"] == ("0" if status == "succeeded" else "100")


async def test_a_frictionless_card_deposits_with_its_authentication(
    client: BankClient, deposit_body: MakeDepositBody
) -> None:
    authentication = await authenticate(client, number=FRICTIONLESS, currency="USD")
    deposit = with_3ds(deposit_body("d", FRICTIONLESS, capture=False), authentication["id"])
    body = (await client.post("/api/v1/deposit", json=deposit)).json()
    assert (body["status"], body["code"]) == ("authorized", "0")


@pytest.mark.parametrize(
    "mismatch",
    [
        {"number": CHALLENGE_EVERY_TIME},
        {"amount": 999},
        {"currency": "EUR"},
        {"authentication_id": "unknown"},
        {"failed": True},
    ],
    ids=["other-card", "other-amount", "other-currency", "unknown-id", "failed-authentication"],
)
async def test_an_authentication_of_something_else_does_not_count(
    client: BankClient, deposit_body: MakeDepositBody, mismatch: dict[str, Any]
) -> None:
    authentication = await authenticate(client, number=CHALLENGE, currency="USD")
    await answer(client, authentication, code="0000" if mismatch.get("failed") else "1234")
    number = mismatch.get("number", CHALLENGE)
    body = deposit_body("d", number, amount=mismatch.get("amount", 1000))
    body["currency"] = mismatch.get("currency", "USD")
    deposit = with_3ds(body, mismatch.get("authentication_id", authentication["id"]))

    answer_ = (await client.post("/api/v1/deposit", json=deposit)).json()
    assert (answer_["status"], answer_["reason"]) == ("failed", "authentication_required")


async def test_a_not_enrolled_card_ignores_three_d_secure(
    client: BankClient, deposit_body: MakeDepositBody
) -> None:
    for reference, authentication_id in [("a", "whatever"), ("b", str(uuid.uuid4()))]:
        deposit = with_3ds(deposit_body(reference, NOT_ENROLLED), authentication_id)
        body = (await client.post("/api/v1/deposit", json=deposit)).json()
        assert body["status"] == "succeeded"


@pytest.mark.parametrize(
    ("three_d_secure", "field"),
    [
        ({}, "three_d_secure.authentication_id"),
        ({"authentication_id": ""}, "three_d_secure.authentication_id"),
        ({"authentication_id": "x" * 65}, "three_d_secure.authentication_id"),
        ({"authentication_id": "a", "eci": "05"}, "three_d_secure.eci"),
        ("auth-id", "three_d_secure"),
    ],
)
async def test_a_malformed_three_d_secure_is_422(
    client: BankClient, deposit_body: MakeDepositBody, three_d_secure: object, field: str
) -> None:
    body = deposit_body("d", CHALLENGE) | {"three_d_secure": three_d_secure}
    problem = assert_problem(await client.post("/api/v1/deposit", json=body), 422)
    assert [error["field"] for error in problem["errors"]] == [field]


async def test_an_authenticated_deposit_needs_no_cvv(
    client: BankClient, deposit_body: MakeDepositBody
) -> None:
    # After a challenge the gateway has no CVV left to send: it never keeps one.
    authentication = await authenticate(client, number=CHALLENGE, currency="USD")
    await answer(client, authentication, code="1234")
    deposit = with_3ds(deposit_body("d", CHALLENGE), authentication["id"])
    del deposit["card"]["cvv"]

    body = (await client.post("/api/v1/deposit", json=deposit)).json()

    assert (body["status"], body["code"]) == ("succeeded", "0")


async def test_any_other_deposit_still_needs_its_cvv(
    client: BankClient, deposit_body: MakeDepositBody
) -> None:
    deposit = deposit_body("d", NOT_ENROLLED)
    del deposit["card"]["cvv"]

    problem = assert_problem(await client.post("/api/v1/deposit", json=deposit), 422)

    assert [error["field"] for error in problem["errors"]] == ["card.cvv"]
    assert (await client.get("/api/v1/deposits/d")).status_code == 404
