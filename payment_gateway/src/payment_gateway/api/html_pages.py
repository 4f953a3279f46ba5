"""The gateway's few HTML pages for a shopper's browser: the hosted payment page's and the
one a 3-D Secure return shows (docs/design.md, Hosted payment page).

Jinja2, autoescaped and self-contained: each page's one style sheet and script are inline
under a per-response CSP nonce, and every page works without the script.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.responses import HTMLResponse

_templates = Environment(
    loader=PackageLoader("payment_gateway", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    auto_reload=False,
)


def security_headers(nonce: str, form_origins: tuple[str, ...] = ()) -> dict[str, str]:
    """Every page's headers: a strict CSP (style and script only with this response's nonce;
    forms only to here and where their answer may redirect), no caching, no referrer."""
    form_action = " ".join(dict.fromkeys(("'self'", *form_origins)))
    policy = (
        f"default-src 'self'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        f"img-src 'self' data:; form-action {form_action}; frame-ancestors 'none'; "
        "base-uri 'none'; object-src 'none'"
    )
    return {
        "Content-Security-Policy": policy,
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
    }


def render_page(
    template: str,
    status_code: int,
    context: Mapping[str, object],
    form_origins: tuple[str, ...] = (),
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    nonce = secrets.token_urlsafe(18)
    html = _templates.get_template(template).render(**context, nonce=nonce)
    all_headers = {**security_headers(nonce, form_origins), **(headers or {})}
    return HTMLResponse(html, status_code, headers=all_headers)


def message_page(
    status_code: int,
    heading: str,
    message: str,
    *,
    link: tuple[str, str] | None = None,
    refresh: bool = False,
    go_on: bool = False,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """A heading, a sentence and maybe a link; ``go_on`` follows the link at once (by script),
    ``refresh`` reloads the page every few seconds."""
    context = {
        "heading": heading,
        "message": message,
        "link": link,
        "refresh": refresh,
        "go_on": go_on,
    }
    return render_page("checkout/message.html", status_code, context, headers=headers)


def form_refused_page(status_code: int, headers: Mapping[str, str] | None = None) -> HTMLResponse:
    """A post the page's own form would never send: not a form (415) or far too long (413)."""
    return message_page(
        status_code, "This form cannot be accepted", "Send the form from its page.", headers=headers
    )
