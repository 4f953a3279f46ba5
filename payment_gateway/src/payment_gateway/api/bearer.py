"""The API key of ``Authorization: Bearer <key>``, parsed one way everywhere."""

from __future__ import annotations

from fastapi.security.utils import get_authorization_scheme_param


def bearer_credentials(authorization: str | None) -> str | None:
    """The token of an Authorization header value, read as FastAPI's HTTPBearer reads it."""
    scheme, credentials = get_authorization_scheme_param(authorization)
    return credentials if scheme.lower() == "bearer" and credentials else None
