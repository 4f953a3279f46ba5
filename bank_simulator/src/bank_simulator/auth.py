"""Shared-secret bearer authentication of the bank's API (``BANK_API_KEY``)."""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from bank_simulator.problems import problem

PROTECTED_PREFIX = "/api/v1/"


def bearer_token(authorization: bytes) -> bytes | None:
    """The token of an ``Authorization: Bearer <token>`` value (the scheme is case-insensitive)."""
    scheme, _, token = authorization.strip().partition(b" ")
    if scheme.lower() != b"bearer":
        return None
    return token.strip() or None


class BearerKeyMiddleware:
    """Answers 401 to any /api/v1 request that does not carry the shared key.

    Pure ASGI rather than a dependency on each route: every route under /api/v1, present or
    future, is covered, and /healthz stays open for probes.
    """

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self._app = app
        self._key = api_key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PROTECTED_PREFIX):
            token = next(
                (
                    bearer_token(value)
                    for name, value in scope["headers"]
                    if name == b"authorization"
                ),
                None,
            )
            # compare_digest: the time taken reveals nothing about how much of the key matched.
            if token is None or not hmac.compare_digest(token, self._key):
                response = problem(
                    401,
                    "Send the bank's API key as Authorization: Bearer <key>.",
                    slug="unauthorized",
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await response(scope, receive, send)
                return
        await self._app(scope, receive, send)
