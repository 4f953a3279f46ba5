"""Every error leaves as RFC 9457 application/problem+json, rendered in one place."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

from payment_gateway.api.schemas import CARD_EXPIRED
from payment_gateway.service.errors import FieldError, GatewayError, InvalidRequest, Unauthorized

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
_TYPE_BASE = "urn:payment-gateway:problem:"


def problem_response(
    status: int,
    title: str,
    detail: str,
    *,
    type_slug: str | None = None,
    errors: Iterable[FieldError] = (),
    headers: Mapping[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": f"{_TYPE_BASE}{type_slug}" if type_slug else "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    }
    error_list = [{"field": e.field, "message": e.message} for e in errors]
    if error_list or status == 422:
        body["errors"] = error_list
    return Response(orjson.dumps(body), status, headers=headers, media_type=PROBLEM_JSON)


def field_errors(errors: Iterable[Mapping[str, Any]], *, strip: int = 0) -> list[FieldError]:
    """Pydantic error dicts as ``{"field": "card.number", ...}``; never echoes the input."""
    result: list[FieldError] = []
    for error in errors:
        location = [str(part) for part in error.get("loc", ())[strip:]]
        field = ".".join(location) or "body"
        message = str(error.get("msg", "is invalid")).removeprefix("Value error, ")
        if error.get("type") == "json_invalid":
            field, message = "body", "is not valid JSON"
        result.append(FieldError(field, message))
        if error.get("type") == CARD_EXPIRED:
            result.append(FieldError(field.replace("expiry_year", "expiry_month"), message))
    return result


def invalid_request(exc: ValidationError) -> InvalidRequest:
    errors = field_errors(exc.errors(include_input=False, include_url=False))
    return InvalidRequest("the request is invalid: see errors", errors=errors)


def render_gateway_error(exc: GatewayError) -> Response:
    headers = (
        {"WWW-Authenticate": 'Bearer realm="payments"'} if isinstance(exc, Unauthorized) else None
    )
    return problem_response(
        exc.status_code,
        exc.title,
        exc.detail,
        type_slug=exc.type_slug,
        errors=exc.errors,
        headers=headers,
    )


_METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> str:
    """Every method the request's path answers, for a 405's ``Allow``.

    Starlette names only the methods of the first route that matched the path, but a path
    may have several (``GET`` and ``POST /api/v1/payments`` are two routes).
    """
    routes = request.app.router.routes
    return ", ".join(
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    )


def install_error_handlers(app: FastAPI) -> None:
    async def on_gateway_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, GatewayError)
        if exc.status_code >= 500:
            log.error("gateway error: %s", exc.detail)
        return render_gateway_error(exc)

    async def on_request_validation(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        # Locations look like ("header", "Idempotency-Key") or ("path", "payment_id").
        errors = field_errors(exc.errors(), strip=1)
        return problem_response(
            422,
            "Unprocessable Content",
            "the request is invalid: see errors",
            type_slug="validation-error",
            errors=errors,
        )

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        from http import HTTPStatus

        phrase = HTTPStatus(exc.status_code).phrase
        detail = exc.detail if isinstance(exc.detail, str) else phrase
        headers = exc.headers
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": allowed_methods(request)}
        return problem_response(exc.status_code, phrase, detail, headers=headers)

    async def on_unexpected(_request: Request, exc: Exception) -> Response:
        log.exception("unhandled error", exc_info=exc)
        return problem_response(500, "Internal Server Error", "an unexpected error occurred")

    app.add_exception_handler(GatewayError, on_gateway_error)
    app.add_exception_handler(RequestValidationError, on_request_validation)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
