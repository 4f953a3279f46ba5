"""RFC 9457 ``application/problem+json`` responses and the app's exception handlers."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from bank_simulator.schemas import PATTERN_MESSAGES

logger = logging.getLogger(__name__)

PROBLEM_BASE = "urn:bank-simulator:problem:"
_LOCATION_PREFIXES = frozenset({"body", "path", "query", "header", "cookie"})


class JSONBytesResponse(Response):
    """JSON response serialised with orjson."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class ProblemResponse(JSONBytesResponse):
    media_type = "application/problem+json"


def problem(
    status: int,
    detail: str,
    *,
    slug: str | None = None,
    title: str | None = None,
    errors: list[dict[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> ProblemResponse:
    """A problem response; without ``slug`` the type is ``about:blank`` (plain HTTP error)."""
    phrase = _phrase(status)
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + slug if slug else "about:blank",
        "title": title or phrase,
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = errors
    return ProblemResponse(body, status_code=status, headers=headers)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def field_path(loc: Sequence[int | str], *, strip_location: bool = False) -> str:
    """``("card", "number")`` → ``"card.number"``; the whole body → ``"body"``.

    With ``strip_location`` (FastAPI's errors) a leading ``"body"``/``"path"``/… is dropped.
    """
    parts = list(loc)
    if strip_location and parts and parts[0] in _LOCATION_PREFIXES and len(parts) > 1:
        parts = parts[1:]
    return ".".join(str(part) for part in parts) or "body"


def validation_problem(
    errors: Iterable[Mapping[str, Any]], *, strip_location: bool = False
) -> ProblemResponse:
    """422 naming each invalid field. Input values are never echoed (they may be a PAN)."""
    items: list[dict[str, str]] = []
    for error in errors:
        field = field_path(error.get("loc", ()), strip_location=strip_location)
        kind = error.get("type", "")
        if kind == "string_pattern_mismatch" and field in PATTERN_MESSAGES:
            message = PATTERN_MESSAGES[field]
        elif kind == "extra_forbidden":
            message = "unknown field"
        elif kind == "json_invalid":
            message = str(error.get("msg", "invalid JSON"))
        else:
            message = str(error.get("msg", "invalid value"))
        items.append({"field": field, "message": message})
    names = ", ".join(dict.fromkeys(item["field"] for item in items))
    return problem(
        422,
        f"The request is invalid: {names}." if names else "The request is invalid.",
        slug="validation-error",
        title="Validation error",
        errors=items,
    )


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else _phrase(exc.status_code)
    return problem(exc.status_code, detail, headers=exc.headers)


async def _request_validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return validation_problem(exc.errors(), strip_location=True)


async def _unexpected(request: Request, exc: Exception) -> Response:
    logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(500, "Unexpected error.", slug="internal-error")


def install_exception_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(Exception, _unexpected)
