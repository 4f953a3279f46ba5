"""The hosted payment page: where the shopper types the card (docs/design.md, Hosted payment
page).

``GET /checkout/{id}`` renders the session's page (Jinja2, autoescaped, self-contained: its
one style sheet and one script are inline under a per-response CSP nonce, and the form works
without the script). ``POST`` takes the card: a payment is made for the session with the
attempt's idempotency key, and the browser is sent (303) to ``success_url`` with
``session_id`` added once it succeeds, or shown the form again with the reason after a
decline. The form carries a CSRF token bound to the session (an HMAC of its id under a key
derived from IDEMPOTENCY_HASH_KEY). Every request counts against the client address's rate
limit, as unauthenticated API requests do. Not in the OpenAPI document: browsers come here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal

from babel.numbers import format_currency, get_currency_precision
from fastapi import APIRouter, Request
from starlette.datastructures import FormData
from starlette.responses import HTMLResponse, RedirectResponse, Response

from payment_gateway.api.checkout_form import read_card_form
from payment_gateway.api.dependencies import limit_by_address
from payment_gateway.api.html_pages import form_refused_page, message_page, render_page
from payment_gateway.api.rate_limit import RateLimited
from payment_gateway.bootstrap import Services
from payment_gateway.domain.checkout import (
    CHECKOUT_PATH,
    MAX_DECLINES,
    CheckoutSession,
    CheckoutStatus,
)
from payment_gateway.domain.payment import Payment, PaymentStatus
from payment_gateway.domain.urls import web_origin
from payment_gateway.service.checkout import CheckoutView
from payment_gateway.service.errors import GatewayError

LOCALE = "en_US"
_FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
_MAX_FORM_BYTES = 4096
_CSRF_CONTEXT = b"payment-gateway checkout csrf v1"

checkout_page_router = APIRouter(include_in_schema=False)

_DECLINE_MESSAGES = {
    "insufficient_funds": "Your card was declined: insufficient funds.",
    "card_expired": "Your card was declined: it has expired.",
    "bank_unavailable": "We could not reach your bank, so nothing was charged.",
    "authentication_failed": "Your bank could not confirm it was you.",
    "authentication_expired": "The check with your bank was not finished in time.",
    "authentication_required": "Your bank could not confirm it was you.",
    "card_declined": "Your card was declined by your bank.",
}


def format_amount(amount: int, currency: str) -> str:
    """``1000, "EUR"`` → ``€10.00``: minor units in the currency's own precision (Babel)."""
    major = Decimal(amount).scaleb(-get_currency_precision(currency))
    return format_currency(major, currency, locale=LOCALE)


def csrf_token(secret: bytes, session_id: str) -> str:
    """The form's token: an HMAC of the session id under a key of its own, derived from
    ``secret``, so it is valid for that session's page only and needs no cookie."""
    key = hmac.new(secret, _CSRF_CONTEXT, hashlib.sha256).digest()
    digest = hmac.new(key, session_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _unavailable() -> HTMLResponse:
    """No such session, another's guess, or an expired one: the same page, revealing nothing."""
    return message_page(
        404,
        "This payment page is not available",
        "The link is not valid or has expired. Go back to the shop to start again.",
    )


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers={"Referrer-Policy": "no-referrer"})


def _challenge_url(payment: Payment | None) -> str | None:
    """The bank's challenge page while the payment waits for the shopper's answer."""
    if payment is None or payment.status is not PaymentStatus.REQUIRES_ACTION:
        return None
    three_d_secure = payment.three_d_secure
    return three_d_secure.challenge_url if three_d_secure is not None else None


def _decline_message(payment: Payment | None, session: CheckoutSession) -> str | None:
    if payment is None or payment.status is not PaymentStatus.FAILED:
        return None
    reason = _DECLINE_MESSAGES.get(payment.decline_reason or "", "Your card was declined.")
    left = MAX_DECLINES - session.declines
    tries = "1 more try" if left == 1 else f"{left} more tries"
    return f"{reason} Try again or use another card ({tries} left)."


def _form(
    services: Services,
    session: CheckoutSession,
    status_code: int = 200,
    *,
    alert: str | None = None,
    errors: Mapping[str, str] | None = None,
    name: str = "",
    expiry: str = "",
) -> HTMLResponse:
    context = {
        "session": session,
        "merchant_name": session.merchant_name,
        "amount": format_amount(session.amount, session.currency),
        "csrf_token": csrf_token(services.settings.idempotency_key_bytes, session.id),
        "attempt": session.declines,
        "alert": alert,
        "errors": errors or {},
        "name": name,
        "expiry": expiry,
        "action": f"{CHECKOUT_PATH}{session.id}",
    }
    # The form's answer redirects to success_url or the bank's challenge page: CSP's
    # form-action covers those redirects too.
    origins = (web_origin(services.settings.bank_public_url), web_origin(session.success_url))
    return render_page("checkout/form.html", status_code, context, origins)


def _complete(session: CheckoutSession) -> HTMLResponse:
    return message_page(
        200,
        "Payment complete",
        "Thank you: your payment was received.",
        link=(session.success_redirect(), "Return to the shop"),
    )


def _outcome(services: Services, view: CheckoutView) -> Response:
    """The page for where a session stands after a post (or a return from the bank)."""
    session, payment = view.session, view.payment
    if session is None:
        return _unavailable()
    if session.status is CheckoutStatus.COMPLETE:
        return _see_other(session.success_redirect())
    if session.status is CheckoutStatus.EXPIRED:
        if session.declines >= MAX_DECLINES:
            return message_page(
                200,
                "This payment page is closed",
                "Too many cards were declined, so this page was closed to protect you. "
                "Go back to the shop to start again.",
            )
        return _unavailable()
    if not services.checkout.accepts_payment(session):
        return _unavailable()
    challenge = _challenge_url(payment)
    if challenge is not None:
        return _see_other(challenge)  # the bank's 3-D Secure page (again, if need be)
    if session.payment_pending:
        return _see_other(f"{CHECKOUT_PATH}{session.id}")  # the processing page
    alert = _decline_message(payment, session)
    if view.stale and alert is None:
        alert = "This form was already sent. Check the details and try again."
    return _form(services, session, alert=alert)


def _pending_page(session: CheckoutSession) -> HTMLResponse:
    return message_page(
        200,
        "Your payment is being processed",
        "We are waiting for your bank's answer. This page looks again every few seconds; "
        "you may also close it, the shop will be told.",
        link=(f"{CHECKOUT_PATH}{session.id}", "Check again"),
        refresh=True,
    )


async def _admit(request: Request) -> Services | Response:
    """The services, within the client address's rate limit (as every request a shopper's
    browser makes without an API key); a 429 page once it is spent."""
    try:
        await limit_by_address(request)
    except RateLimited as refused:
        return message_page(
            429,
            "Too many requests",
            "Please wait a moment, then try again.",
            headers=refused.headers,
        )
    services: Services = request.app.state.services
    return services


async def _read_form(request: Request) -> FormData | None:
    try:
        return await request.form(max_files=0, max_fields=8, max_part_size=_MAX_FORM_BYTES)
    except Exception:  # a malformed or oversized body: python-multipart's own errors
        return None


@checkout_page_router.get(CHECKOUT_PATH + "{session_id}")
async def checkout_page(session_id: str, request: Request) -> Response:
    services = await _admit(request)
    if isinstance(services, Response):
        return services
    view = await services.checkout.view(session_id)
    session = view.session
    if session is None:
        return _unavailable()
    if session.status is CheckoutStatus.COMPLETE:
        return _complete(session)
    if not services.checkout.accepts_payment(session):
        return _unavailable()
    challenge = _challenge_url(view.payment)
    if challenge is not None:
        return message_page(
            200,
            "Confirm the payment with your bank",
            "Your bank asked to confirm it's you before this payment goes through.",
            link=(challenge, "Continue to your bank"),
        )
    if session.payment_pending:
        return _pending_page(session)
    return _form(services, session)


@checkout_page_router.get(CHECKOUT_PATH + "{session_id}/return")
async def challenge_return(session_id: str, request: Request) -> Response:
    """Back from the bank's 3-D Secure page (through ``/3ds/return/{payment_id}``, which has
    settled the payment server-side and sent the browser on here by script, so a redirect
    from here is no longer one after the bank page's form post). Its query is not trusted:
    the session says where the payment stands."""
    services = await _admit(request)
    if isinstance(services, Response):
        return services
    return _outcome(services, await services.checkout.view(session_id))


@checkout_page_router.post(CHECKOUT_PATH + "{session_id}")
async def submit_card(session_id: str, request: Request) -> Response:
    services = await _admit(request)
    if isinstance(services, Response):
        return services
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if content_type not in _FORM_TYPES:
        return form_refused_page(415)
    declared = request.headers.get("content-length", "")
    form = (
        None
        if declared.isdigit() and int(declared) > _MAX_FORM_BYTES
        else await _read_form(request)
    )
    if form is None:
        return form_refused_page(413)
    token = form.get("csrf_token")
    expected = csrf_token(services.settings.idempotency_key_bytes, session_id)
    if not isinstance(token, str) or not hmac.compare_digest(token, expected):
        return message_page(
            403,
            "This form cannot be accepted",
            "It was not sent from this payment page. Go back to the shop and start again.",
        )
    view = await services.checkout.view(session_id)
    session = view.session
    if session is None or not services.checkout.accepts_payment(session):
        return _outcome(services, view)
    card_form = read_card_form(form, datetime.now(UTC))
    attempt = form.get("attempt")
    if card_form.card is None or not isinstance(attempt, str) or not attempt.isdigit():
        return _form(
            services,
            session,
            422,
            errors=card_form.errors,
            name=card_form.name,
            expiry=card_form.expiry,
        )
    try:
        view = await services.checkout.pay(session_id, int(attempt), card_form.card)
    except GatewayError:
        return message_page(
            503,
            "We could not take your payment",
            "Something went wrong on our side. Nothing new was charged: wait a moment, then "
            "reload this page.",
        )
    return _outcome(services, view)
