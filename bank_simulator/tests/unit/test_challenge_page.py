"""The 3-D Secure challenge page (GET/POST /3ds/challenge/{id}): its headers, its content, its
form (CSRF token, code, cancel) and the redirect back, in process."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from html import escape
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
from bank_simulator.challenge import format_amount

from ..conftest import BankClient, ClientFactory

PAN = "4000000000003220"
RETURN_URL = "https://gateway.example:8443/3ds/return?payment=p1&x=%2F"


class Elements(HTMLParser):
    """Every start tag of a page, with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def find(self, tag: str, **attrs: str) -> list[dict[str, str | None]]:
        return [
            found
            for name, found in self.tags
            if name == tag and all(found.get(k) == v for k, v in attrs.items())
        ]


def elements(html: str) -> Elements:
    parser = Elements()
    parser.feed(html)
    return parser


def csp(response: httpx.Response) -> dict[str, list[str]]:
    """The Content-Security-Policy as directive → sources."""
    directives = [d.split() for d in response.headers["content-security-policy"].split(";")]
    return {d[0]: d[1:] for d in directives if d}


def assert_page_headers(response: httpx.Response) -> dict[str, list[str]]:
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    policy = csp(response)
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    assert policy["form-action"][0] == "'self'"
    styles = policy["style-src"]
    assert len(styles) == 2
    assert styles[0] == "'self'"
    assert styles[1].startswith("'nonce-")
    nonce = styles[1].removeprefix("'nonce-").removesuffix("'")
    assert len(nonce) >= 16
    # Self-contained: no script at all, styles only under this response's nonce, no external URL.
    page = elements(response.text)
    assert page.find("script") == []
    assert [s.get("nonce") for s in page.find("style")] == [nonce]
    assert page.find("link") == []
    external = re.compile(r"""(src|href)=["']?(https?:)?//""")
    assert not external.search(response.text.replace(escape(RETURN_URL), ""))
    assert page.find("html", lang="en")
    assert page.find("meta", name="viewport")
    return policy


async def start(
    client: BankClient, number: str = PAN, holder_name: str | None = None, **changes: Any
) -> dict[str, Any]:
    body = {
        "reference": "auth-1",
        "card": {"number": number, "expiry": "12/2042", "holder_name": holder_name},
        "amount": 123456,
        "currency": "EUR",
        "return_url": RETURN_URL,
    } | changes
    response = await client.post("/api/v1/3ds/authentications", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def token_of(html: str) -> str:
    [field] = elements(html).find("input", type="hidden", name="csrf_token")
    assert field["value"]
    return field["value"]


async def result(client: BankClient, reference: str = "auth-1") -> dict[str, Any]:
    body: dict[str, Any] = (await client.get(f"/api/v1/3ds/authentications/{reference}")).json()
    return body


@pytest.fixture
async def client(make_client: ClientFactory) -> AsyncIterator[BankClient]:
    async with make_client(public_url="http://bank.test") as c:
        yield c


async def test_the_page_asks_for_the_code(client: BankClient) -> None:
    authentication = await start(client)
    response = await client.get(authentication["challenge_url"])

    assert response.status_code == 200
    policy = assert_page_headers(response)
    # The form may post here and be redirected to the return URL's origin, nowhere else.
    assert policy["form-action"] == ["'self'", "https://gateway.example:8443"]
    html = response.text
    assert "Your bank wants to confirm it&#39;s you" in html or "confirm it's you" in html
    assert "€1,234.56" in html
    assert "3220" in html
    assert PAN not in html
    assert "Test code: 1234" in html
    page = elements(html)
    [form] = page.find("form")
    assert form["method"] == "post"
    assert "action" not in form  # posts back to this very page
    [code] = page.find("input", name="code")
    assert code["autocomplete"] == "one-time-code"
    assert code["inputmode"] == "numeric"
    assert page.find("label", **{"for": str(code["id"])})
    buttons = page.find("button", type="submit")
    assert [(b["name"], b["value"]) for b in buttons] == [
        ("action", "submit"),
        ("action", "cancel"),
    ]
    assert "formnovalidate" in buttons[1]  # Cancel works with an empty code field
    assert re.search(r">\s*Submit\s*<", html)
    assert re.search(r">\s*Cancel\s*<", html)
    # A visible focus style, and a layout that fits a narrow screen.
    assert re.search(r":focus-visible \{ outline: 3px solid", html)
    assert "width=device-width" in html


async def test_each_response_has_its_own_nonce(client: BankClient) -> None:
    authentication = await start(client)
    first = await client.get(authentication["challenge_url"])
    second = await client.get(authentication["challenge_url"])
    assert csp(first)["style-src"] != csp(second)["style-src"]
    assert token_of(first.text) == token_of(second.text)  # bound to the authentication


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        (1000, "USD", "$10.00"),
        (500, "JPY", "¥500"),
        (1234, "KWD", "KWD1.234"),
        (99, "GBP", "£0.99"),
    ],
)
def test_amounts_are_formatted_in_the_currency(amount: int, currency: str, shown: str) -> None:
    assert format_amount(amount, currency) == shown


async def test_the_right_code_authenticates_and_goes_back(client: BankClient) -> None:
    authentication = await start(client)
    page = await client.get(authentication["challenge_url"])
    answer = await client.post(
        authentication["challenge_url"],
        data={"csrf_token": token_of(page.text), "code": "1234", "action": "submit"},
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == RETURN_URL  # unchanged
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["referrer-policy"] == "no-referrer"
    assert (await result(client))["status"] == "authenticated"


@pytest.mark.parametrize(
    ("form", "reason"),
    [({"code": "4321"}, "wrong_code"), ({"action": "cancel", "code": ""}, "canceled")],
)
async def test_a_wrong_code_or_cancel_fails_and_goes_back(
    client: BankClient, form: dict[str, str], reason: str
) -> None:
    authentication = await start(client)
    page = await client.get(authentication["challenge_url"])
    answer = await client.post(
        authentication["challenge_url"], data={"csrf_token": token_of(page.text)} | form
    )
    assert (answer.status_code, answer.headers["location"]) == (303, RETURN_URL)
    assert (await result(client))["failure_reason"] == reason


async def test_a_multipart_form_is_accepted_too(client: BankClient) -> None:
    authentication = await start(client)
    page = await client.get(authentication["challenge_url"])
    fields = {"csrf_token": token_of(page.text), "code": "1234"}
    answer = await client.post(
        authentication["challenge_url"], files={k: (None, v) for k, v in fields.items()}
    )
    assert answer.status_code == 303
    assert (await result(client))["status"] == "authenticated"


@pytest.mark.parametrize(
    "token",
    [None, "", "wrong", "x" * 43, "token-of-another-authentication"],
)
async def test_a_post_without_the_right_csrf_token_is_403_and_changes_nothing(
    client: BankClient, token: str | None
) -> None:
    other = await start(client, reference="other")
    other_token = token_of((await client.get(other["challenge_url"])).text)
    authentication = await start(client)
    data = {"code": "1234"}
    if token is not None:
        data["csrf_token"] = other_token if token.startswith("token-of") else token

    refused = await client.post(authentication["challenge_url"], data=data)

    assert refused.status_code == 403
    assert_page_headers(refused)
    assert (await result(client))["status"] == "challenge_required"


async def test_a_finished_challenge_shows_so_and_changes_nothing(client: BankClient) -> None:
    authentication = await start(client)
    token = token_of((await client.get(authentication["challenge_url"])).text)
    await client.post(authentication["challenge_url"], data={"csrf_token": token, "code": "1"})
    before = await result(client)

    page = await client.get(authentication["challenge_url"])
    assert page.status_code == 200
    assert_page_headers(page)
    assert "already complete" in page.text
    assert elements(page.text).find("form") == []
    assert elements(page.text).find("a", href=RETURN_URL)

    replay = await client.post(
        authentication["challenge_url"], data={"csrf_token": token, "code": "1234"}
    )
    assert replay.status_code == 409
    assert "already complete" in replay.text
    assert await result(client) == before
    assert before["status"] == "failed"


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_an_unknown_or_challenge_free_id_is_a_404_page(
    client: BankClient, method: str
) -> None:
    frictionless = await start(client, "4000000000003055", reference="f")
    not_enrolled = await start(client, "4242424242424242", reference="n")
    for authentication_id in ["nope", frictionless["id"], not_enrolled["id"]]:
        response = await client.request(method, f"/3ds/challenge/{authentication_id}")
        assert response.status_code == 404
        assert_page_headers(response)
        assert "Page not found" in response.text


async def test_a_post_that_is_not_a_form_is_refused(client: BankClient) -> None:
    authentication = await start(client)
    token = token_of((await client.get(authentication["challenge_url"])).text)
    as_json = await client.post(
        authentication["challenge_url"], json={"csrf_token": token, "code": "1234"}
    )
    assert as_json.status_code == 415
    huge = await client.post(
        authentication["challenge_url"], data={"csrf_token": token, "code": "1" * 5000}
    )
    assert huge.status_code == 413
    assert (await result(client))["status"] == "challenge_required"


async def test_no_page_shows_the_full_card_number(client: BankClient) -> None:
    authentication = await start(client, holder_name="John Doe")
    url = authentication["challenge_url"]
    token = token_of((await client.get(url)).text)
    pages = [
        await client.get(url),
        await client.post(url, data={"code": "1234"}),
        await client.post(url, data={"csrf_token": token, "code": "1234"}),
        await client.get(url),
        await client.post(url, data={"csrf_token": token, "code": "1234"}),
    ]
    for page in pages:
        assert PAN not in page.text
        assert PAN not in str(page.headers)
        assert "John Doe" not in page.text


async def test_the_challenge_routes_are_not_in_the_openapi_document(client: BankClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    assert not [path for path in schema["paths"] if path.startswith("/3ds/")]
