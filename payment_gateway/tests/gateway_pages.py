"""What every HTML page the gateway shows a browser must carry, and where one goes on to."""

from __future__ import annotations

import html
import re

import httpx

NONCE = re.compile(r"'nonce-([A-Za-z0-9_-]+)'")


def assert_page_headers(response: httpx.Response) -> str:
    """The headers every page carries; the nonce its CSP allows."""
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    policy = response.headers["content-security-policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["base-uri"] == "'none'"
    assert directives["object-src"] == "'none'"
    assert directives["img-src"] == "'self' data:"
    assert directives["form-action"].split()[0] == "'self'"  # then where a post may go on to
    nonces = set(NONCE.findall(policy))
    assert len(nonces) == 1
    nonce: str = nonces.pop()
    assert directives["script-src"] == f"'nonce-{nonce}'"
    assert directives["style-src"] == f"'nonce-{nonce}'"
    # Every inline style and script carries it; nothing is loaded from elsewhere.
    assert re.findall(r"<(?:style|script)\b[^>]*>", response.text) == [
        tag for tag in re.findall(r"<(?:style|script)\b[^>]*>", response.text) if nonce in tag
    ]
    assert not re.search(r"<(?:link|img|script)\b[^>]*\b(?:src|href)=", response.text)
    return nonce


def goes_on_to(response: httpx.Response) -> str:
    """The address a page that goes on by itself leads to: its script's, which must be the
    same as its link's (for a browser without script)."""
    assert response.status_code == 200
    assert_page_headers(response)
    script = re.search(r"window\.location\.replace\(\"([^\"]+)\"\)", response.text)
    link = re.search(r'<a class="button primary" href="([^"]+)"', response.text)
    assert script is not None, response.text
    assert link is not None, response.text
    target = html.unescape(link.group(1))
    assert script.group(1).encode().decode("unicode_escape") == target
    return target
