"""CSRF for forms: a synchronizer token kept in the visitor's signed cookie session.

The token is bound to one visitor, compared in constant time, and replaced at sign-in and
sign-out, so a token from before either is worthless afterwards.
"""

from __future__ import annotations

import hmac
import secrets

from quart import request, session

from .errors import APIError

FIELD = "csrf_token"
_SESSION_KEY = "csrf"


def csrf_token() -> str:
    """The visitor's token, made on first use (also a Jinja global for the forms)."""
    token = session.get(_SESSION_KEY)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session[_SESSION_KEY] = token
    return token


def rotate_csrf_token() -> None:
    session[_SESSION_KEY] = secrets.token_urlsafe(32)


async def check_csrf() -> None:
    """Refuse a state-changing form post whose token is missing or not this visitor's."""
    if request.method in {"GET", "HEAD", "OPTIONS"}:
        return
    sent = (await request.form).get(FIELD, "")
    expected = session.get(_SESSION_KEY)
    if not isinstance(expected, str) or not hmac.compare_digest(
        sent.encode("utf-8", "replace"), expected.encode()
    ):
        raise APIError(400, "CSRF_FAILED", "This form has expired. Reload the page and try again.")
