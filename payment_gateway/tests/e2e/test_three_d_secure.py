"""3-D Secure end to end: a real gateway and bank simulator, the shopper's browser played by
an HTTP client that follows the redirects and fills in the bank's challenge form."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest
from gateway_pages import goes_on_to

from .conftest import (
    BANK_AUTH,
    Service,
    bank_deposit,
    bank_env,
    deposits_logged,
    free_port,
    gateway_env,
    mentions_cvv,
    start_service,
)

pytestmark = pytest.mark.e2e

MERCHANT = {"Authorization": "Bearer first_merchant_mock_token"}
CHALLENGE_CARD = "4000000000003220"
DECLINED_AFTER_CHALLENGE = "4000008400001629"
FRICTIONLESS_CARD = "4000000000003055"
RETURN_URL = "https://shop.example/checkout/done"
CVV = "7305"  # looked for in the logs afterwards
CHALLENGE_TTL_SECONDS = 3


class Stack3ds:
    def __init__(self, bank: Service, gateway: Service) -> None:
        self.bank, self.gateway = bank, gateway


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack3ds]:
    workdir = tmp_path_factory.mktemp("stack-3ds")
    bank_port, gateway_port = free_port(), free_port()
    bank_url, gateway_url = f"http://127.0.0.1:{bank_port}", f"http://127.0.0.1:{gateway_port}"
    bank = start_service(
        "bank", "bank_simulator.main:app", bank_port, workdir, bank_env(PUBLIC_URL=bank_url)
    )
    try:
        gateway = start_service(
            "gateway",
            "payment_gateway.main:app",
            gateway_port,
            workdir,
            gateway_env(
                workdir,
                bank.url,
                PUBLIC_URL=gateway_url,
                CHALLENGE_TTL_SECONDS=str(CHALLENGE_TTL_SECONDS),
            ),
        )
    except Exception:
        bank.stop()
        raise
    yield Stack3ds(bank, gateway)
    gateway.stop()
    bank.stop()


def pay(stack: Stack3ds, number: str) -> dict[str, object]:
    body = {
        "card": {"number": number, "expiry_month": 12, "expiry_year": 2042, "cvv": CVV},
        "amount": 2500,
        "currency": "EUR",
        "three_d_secure": {"return_url": RETURN_URL},
    }
    response = httpx.post(
        f"{stack.gateway.url}/api/v1/payments", json=body, headers=MERCHANT, timeout=10
    )
    assert response.status_code == 201, response.text
    payment: dict[str, object] = response.json()
    return payment


def answer_challenge(challenge_url: str, code: str, action: str = "submit") -> httpx.Response:
    """The shopper at the bank's page: read the form, send it; the bank's 303 is returned."""
    with httpx.Client(timeout=10) as browser:
        page = browser.get(challenge_url)
        assert page.status_code == 200
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token is not None
        answered = browser.post(
            challenge_url, data={"csrf_token": token.group(1), "code": code, "action": action}
        )
    assert answered.status_code == 303
    return answered


def follow_back(stack: Stack3ds, bank_redirect: httpx.Response) -> str:
    """The browser goes where the bank sent it: the gateway, whose page sends it on (by
    script, with a link); where to."""
    location = bank_redirect.headers["location"]
    assert location.startswith(f"{stack.gateway.url}/3ds/return/")
    return goes_on_to(httpx.get(location, timeout=10))


def read(stack: Stack3ds, payment_id: object) -> dict[str, object]:
    response = httpx.get(f"{stack.gateway.url}/api/v1/payments/{payment_id}", headers=MERCHANT)
    payment: dict[str, object] = response.json()
    return payment


def authentication(stack: Stack3ds, payment_id: object) -> dict[str, object]:
    response = httpx.get(
        f"{stack.bank.url}/api/v1/3ds/authentications/{payment_id}", headers=BANK_AUTH
    )
    assert response.status_code == 200
    found: dict[str, object] = response.json()
    return found


def next_action_url(payment: dict[str, object]) -> str:
    assert payment["status"] == "requires_action"
    next_action = payment["next_action"]
    assert isinstance(next_action, dict)
    assert next_action["type"] == "redirect_to_url"
    url: str = next_action["url"]
    return url


def test_a_passed_challenge_ends_on_the_merchants_page_with_one_deposit(stack: Stack3ds) -> None:
    payment = pay(stack, CHALLENGE_CARD)
    challenge_url = next_action_url(payment)
    assert challenge_url.startswith(f"{stack.bank.url}/3ds/challenge/")

    back = follow_back(stack, answer_challenge(challenge_url, "1234"))
    replay = httpx.get(f"{stack.gateway.url}/3ds/return/{payment['id']}", timeout=10)

    assert back == f"{RETURN_URL}?payment_id={payment['id']}"
    assert goes_on_to(replay) == back
    done = read(stack, payment["id"])
    assert done["status"] == "succeeded"
    assert done["three_d_secure"] == {
        "authentication_flow": "challenge",
        "result": "authenticated",
        "eci": "05",
        "version": "2.2.0",
    }
    assert authentication(stack, payment["id"])["status"] == "authenticated"
    assert bank_deposit(stack.bank, str(payment["id"]))["status"] == "succeeded"
    assert deposits_logged(stack.bank, str(payment["id"])) == [payment["id"]]


def test_a_wrong_code_fails_the_payment_and_nothing_is_charged(stack: Stack3ds) -> None:
    payment = pay(stack, CHALLENGE_CARD)

    follow_back(stack, answer_challenge(next_action_url(payment), "0000"))

    failed = read(stack, payment["id"])
    assert (failed["status"], failed["decline_reason"]) == ("failed", "authentication_failed")
    assert authentication(stack, payment["id"])["failure_reason"] == "wrong_code"
    assert deposits_logged(stack.bank, str(payment["id"])) == []


def test_a_canceled_challenge_fails_the_payment(stack: Stack3ds) -> None:
    payment = pay(stack, CHALLENGE_CARD)

    follow_back(stack, answer_challenge(next_action_url(payment), "", action="cancel"))

    assert read(stack, payment["id"])["decline_reason"] == "authentication_failed"
    assert deposits_logged(stack.bank, str(payment["id"])) == []


def test_an_authenticated_card_can_still_be_declined_by_the_bank(stack: Stack3ds) -> None:
    payment = pay(stack, DECLINED_AFTER_CHALLENGE)

    follow_back(stack, answer_challenge(next_action_url(payment), "1234"))

    declined = read(stack, payment["id"])
    assert (declined["status"], declined["decline_reason"]) == ("failed", "card_declined")
    assert bank_deposit(stack.bank, str(payment["id"]))["status"] == "failed"


def test_a_frictionless_card_succeeds_at_once(stack: Stack3ds) -> None:
    payment = pay(stack, FRICTIONLESS_CARD)

    assert payment["status"] == "succeeded"
    assert payment["next_action"] is None
    assert payment["three_d_secure"] == {
        "authentication_flow": "frictionless",
        "result": "authenticated",
        "eci": "05",
        "version": "2.2.0",
    }


def test_a_challenge_never_answered_fails_after_its_deadline(stack: Stack3ds) -> None:
    payment = pay(stack, CHALLENGE_CARD)

    deadline = time.monotonic() + CHALLENGE_TTL_SECONDS + 15
    while read(stack, payment["id"])["status"] == "requires_action":
        assert time.monotonic() < deadline, "the reconciler never expired the challenge"
        time.sleep(0.2)

    expired = read(stack, payment["id"])
    assert (expired["status"], expired["decline_reason"]) == ("failed", "authentication_expired")
    # The shopper answering now changes nothing: the payment is over.
    follow_back(stack, answer_challenge(next_action_url(payment), "1234"))
    assert read(stack, payment["id"]) == expired
    assert deposits_logged(stack.bank, str(payment["id"])) == []


def test_no_card_number_or_cvv_in_any_log(stack: Stack3ds) -> None:
    payment = pay(stack, CHALLENGE_CARD)
    follow_back(stack, answer_challenge(next_action_url(payment), "1234"))

    for service in (stack.gateway, stack.bank):
        log = service.log()
        assert CHALLENGE_CARD not in log
        assert not mentions_cvv(log, CVV), f"CVV in {service.name} log"
