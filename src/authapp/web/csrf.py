"""CSRF for forms: a synchronizer token bound to the visitor, signed with a time limit; and
for the JSON API, a refusal of state-changing calls that a browser made from another site.

The visitor's signed cookie session keeps a random secret; each form carries that secret
signed by itsdangerous with the time it was made (Flask-WTF's design, which does not run on
Quart). A post passes only with an unexpired signature over this visitor's own secret,
compared in constant time. The secret is replaced at sign-in and sign-out, so a token from
before either is worthless afterwards.
"""

from __future__ import annotations

import hmac
import secrets
from functools import lru_cache

from itsdangerous import BadData, SignatureExpired
from quart import current_app, request, session

from ..errors import APIError
from ..state import state
from .guards import bearer_token
from .wrappers import PlainTimedSerializer, signing_keys

FIELD = "csrf_token"
_SESSION_KEY = "csrf"
_SALT = "authapp.csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _serializer() -> PlainTimedSerializer:
    return _serializer_for(signing_keys(current_app))


@lru_cache(maxsize=4)
def _serializer_for(keys: tuple[str, ...]) -> PlainTimedSerializer:
    return PlainTimedSerializer(list(keys), salt=_SALT)  # old keys still verify; newest signs


def _visitor_secret() -> str:
    secret = session.get(_SESSION_KEY)
    if not isinstance(secret, str):
        secret = secrets.token_urlsafe(32)
        session[_SESSION_KEY] = secret
    return secret


def csrf_token() -> str:
    """A token for one form of this visitor (also a Jinja global for the templates)."""
    return str(_serializer().dumps(_visitor_secret()))


def rotate_csrf_token() -> None:
    """A new secret at sign-in and sign-out (only for visitors that have one: API clients don't)."""
    if _SESSION_KEY in session:
        session[_SESSION_KEY] = secrets.token_urlsafe(32)


def _refuse(message: str) -> APIError:
    return APIError(400, "CSRF_FAILED", message)


async def check_csrf() -> None:
    """Refuse a state-changing form post whose token is missing, expired or not this visitor's."""
    if request.method in SAFE_METHODS:
        return
    sent = (await request.form).get(FIELD, "")
    expected = session.get(_SESSION_KEY)
    try:
        secret = _serializer().loads(sent, max_age=current_app.config["CSRF_TIME_LIMIT"])
    except SignatureExpired:
        raise _refuse("This form has expired. Reload the page and try again.") from None
    except BadData:
        secret = None
    if not (
        isinstance(secret, str)
        and isinstance(expected, str)
        and hmac.compare_digest(secret.encode(), expected.encode())
    ):
        raise _refuse("This form could not be verified. Reload the page and try again.")


async def check_api_origin() -> None:
    """Refuse a state-changing API call that a browser sent from another site with our cookie.

    JSON bodies need a CORS preflight, which only AUTHAPP_CORS_ORIGINS pass, but a body-less
    POST (sign out, sign out everywhere) is a "simple" request any page can send, and SameSite
    lets a sibling subdomain's page send the cookie along. Browsers say where a request comes
    from (`Sec-Fetch-Site`, `Origin`); programs such as curl say nothing and are let through, and
    a bearer token is no ambient credential, so a call that the token answers for needs no
    check. Any other Authorization header (or a bearer token with AUTHAPP_API_TOKENS off) leaves
    the cookie to answer, so that call is checked.
    """
    if request.method in SAFE_METHODS or bearer_token() is not None:
        return
    origin = request.headers.get("Origin")
    if origin is not None:
        own = {request.host_url.rstrip("/"), state().settings.base_url or ""}
        trusted = own | set(current_app.config["QUART_CORS_ALLOW_ORIGIN"])
        if origin.rstrip("/") in trusted:
            return
        raise APIError(400, "CSRF_FAILED", "This request came from another site.")
    if request.headers.get("Sec-Fetch-Site", "none") not in {"same-origin", "none"}:
        raise APIError(400, "CSRF_FAILED", "This request came from another site.")
