"""The 3-D Secure challenge page, where the shopper's browser answers a challenge.

``GET /3ds/challenge/{id}`` renders the page (Jinja2, self-contained: the only style is inline
under a per-response CSP nonce, and there is no script). ``POST`` takes the form: the test code
authenticates, anything else or Cancel fails the authentication, and the browser is sent (303)
to the authentication's ``return_url``. No bearer key: browsers come here, not the gateway.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from decimal import Decimal

from babel.numbers import format_currency, get_currency_precision
from fastapi import FastAPI, Request
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.datastructures import FormData
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import Message

from bank_simulator.bodies import read_body
from bank_simulator.ledger import Ledger
from bank_simulator.metrics import CHALLENGES
from bank_simulator.schemas import web_origin
from bank_simulator.threeds import CHALLENGE_PATH, Authentication, AuthenticationStatus, Flow

logger = logging.getLogger("bank_simulator")

LOCALE = "en_US"
_FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
_MAX_FORM_BYTES = 4096

_templates = Environment(
    loader=PackageLoader("bank_simulator", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    auto_reload=False,
)


def format_amount(amount: int, currency: str) -> str:
    """``1000, "EUR"`` → ``€10.00``: minor units in the currency's own precision (Babel)."""
    major = Decimal(amount).scaleb(-get_currency_precision(currency))
    return format_currency(major, currency, locale=LOCALE)


def security_headers(nonce: str, form_origins: tuple[str, ...] = ()) -> dict[str, str]:
    """The headers of every page: a strict CSP (styles only with this response's nonce, no
    script, forms only to here and the return URL's origin), no caching, no referrer."""
    form_action = " ".join(("'self'", *form_origins))
    policy = (
        f"default-src 'self'; style-src 'self' 'nonce-{nonce}'; script-src 'none'; "
        f"form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
    )
    return {
        "Content-Security-Policy": policy,
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
    }


def _page(
    template: str,
    status_code: int,
    context: Mapping[str, object],
    form_origins: tuple[str, ...] = (),
) -> HTMLResponse:
    nonce = secrets.token_urlsafe(18)
    html = _templates.get_template(template).render(**context, nonce=nonce)
    return HTMLResponse(html, status_code, headers=security_headers(nonce, form_origins))


def _error_page(status_code: int, heading: str, message: str) -> HTMLResponse:
    return _page("error.html", status_code, {"heading": heading, "message": message})


def _not_found() -> HTMLResponse:
    return _error_page(
        404,
        "Page not found",
        "There is no card check at this address. Go back to the shop and try again.",
    )


def _answered(authentication: Authentication, status_code: int) -> HTMLResponse:
    context = {
        "authenticated": authentication.status is AuthenticationStatus.AUTHENTICATED,
        "return_url": authentication.return_url,
    }
    return _page("answered.html", status_code, context)


async def _read_form(request: Request, limit: int) -> FormData | None:
    """The posted form, or ``None`` when the body is larger than ``limit`` bytes."""
    body = await read_body(request, limit)
    if body is None:
        return None

    async def replay() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    # python-multipart parses it (Starlette's form parsers), from the bounded body read above.
    return await Request(request.scope, replay).form(max_files=0, max_fields=8)


def install_challenge_pages(app: FastAPI, ledger: Ledger) -> None:
    """Add the challenge page's routes; they are for browsers, not in the OpenAPI document."""

    def find(authentication_id: str) -> Authentication | None:
        """The authentication with this id, if it has a challenge (else there is no page)."""
        authentication = ledger.authentication_by_id(authentication_id)
        if authentication is None or authentication.flow is not Flow.CHALLENGE:
            return None
        return authentication

    @app.get(CHALLENGE_PATH + "{authentication_id}", include_in_schema=False)
    async def challenge_page(authentication_id: str) -> Response:
        authentication = find(authentication_id)
        if authentication is None:
            return _not_found()
        if not authentication.awaits_challenge:
            return _answered(authentication, 200)
        context = {
            "amount": format_amount(authentication.amount, authentication.currency),
            "last4": authentication.last4,
            "csrf_token": authentication.csrf_token,
        }
        # The form posts here, and the answer redirects to return_url: CSP's form-action
        # covers the redirect too, so its origin is allowed.
        origin = web_origin(authentication.return_url)
        return _page("challenge.html", 200, context, (origin,))

    @app.post(CHALLENGE_PATH + "{authentication_id}", include_in_schema=False)
    async def answer_challenge(authentication_id: str, request: Request) -> Response:
        authentication = find(authentication_id)
        if authentication is None:
            return _not_found()
        content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if content_type not in _FORM_TYPES:
            return _error_page(415, "Unsupported form", "Send the form from the challenge page.")
        form = await _read_form(request, _MAX_FORM_BYTES)
        if form is None:
            return _error_page(413, "Form too large", "Send the form from the challenge page.")
        token = form.get("csrf_token")
        if not isinstance(token, str) or not authentication.csrf_token_matches(token):
            CHALLENGES.labels("forbidden").inc()
            logger.info(
                "3ds challenge id=%s refused: missing or wrong CSRF token", authentication.id
            )
            return _error_page(
                403,
                "This form cannot be accepted",
                "It was not sent from this page. Go back to the shop and start again.",
            )
        if not authentication.awaits_challenge:
            CHALLENGES.labels("replayed").inc()
            logger.info("3ds challenge id=%s already answered: unchanged", authentication.id)
            return _answered(authentication, 409)
        code = form.get("code")
        # Atomic: no await between the check above and the answer.
        authentication.answer(
            code if isinstance(code, str) else None, cancel=form.get("action") == "cancel"
        )
        result = authentication.failure_reason or authentication.status
        CHALLENGES.labels(result.value).inc()
        logger.info(
            "3ds challenge id=%s reference=%r answered: %s",
            authentication.id,
            authentication.reference,
            result.value,
        )
        return RedirectResponse(
            authentication.return_url,
            status_code=303,
            headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
        )
