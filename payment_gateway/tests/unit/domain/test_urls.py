"""The URLs a shopper's browser may be sent to."""

from __future__ import annotations

import pytest
from payment_gateway.domain.urls import browser_url_problem, with_query


@pytest.mark.parametrize(
    "url",
    ["https://shop.example/back", "http://127.0.0.1:3000/orders/1?x=1", "https://xn--bcher-kva.de"],
)
def test_absolute_web_urls_are_accepted(url: str) -> None:
    assert browser_url_problem(url, https_only=False) is None


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "/orders/1",
        "//shop.example/back",
        "ftp://shop.example/",
        "https://user:pass@shop.example/",
        "https://shop.example:99999/",
        "https://shop.example/a b",
        "https://shop.example/\x00",
        "https://" + "a" * 2050 + ".example/",
    ],
)
def test_anything_else_is_refused(url: str) -> None:
    assert browser_url_problem(url, https_only=False) is not None


def test_production_takes_only_https() -> None:
    assert browser_url_problem("http://shop.example/back", https_only=True) == (
        "must be an https URL"
    )
    assert browser_url_problem("https://shop.example/back", https_only=True) is None


def test_with_query_keeps_the_merchants_query_and_replaces_its_own_name() -> None:
    url = "https://shop.example/back?order=7&payment_id=forged&empty="

    assert with_query(url, payment_id="pay_1") == (
        "https://shop.example/back?order=7&empty=&payment_id=pay_1"
    )
