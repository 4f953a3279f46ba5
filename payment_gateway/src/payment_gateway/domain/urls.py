"""URLs a shopper's browser is sent to: the merchant's return, success and cancel pages."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MAX_URL_LENGTH = 2048


def browser_url_problem(url: str, *, https_only: bool) -> str | None:
    """Why ``url`` cannot be sent to a browser as a redirect; None when it can.

    Absolute http or https only (never ``javascript:`` or a relative path), with no user
    information to phish with; only https when ``https_only`` (production).
    """
    if len(url) > MAX_URL_LENGTH:
        return f"must be at most {MAX_URL_LENGTH} characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return "must be an absolute http or https URL"
    if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        return "must be an absolute http or https URL"
    if any(ord(character) < 0x21 or ord(character) == 0x7F for character in url):
        return "must not contain spaces or control characters"
    if https_only and parts.scheme != "https":
        return "must be an https URL"
    return None


def with_query(url: str, **parameters: str) -> str:
    """``url`` with ``parameters`` added to its query (replacing any of the same name)."""
    parts = urlsplit(url)
    query = [
        (name, value)
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
        if name not in parameters
    ]
    return urlunsplit(parts._replace(query=urlencode([*query, *parameters.items()])))


def web_origin(url: str) -> str:
    """``https://shop.example:8443/x?y`` → ``https://shop.example:8443`` (for CSP)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
