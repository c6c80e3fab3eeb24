"""AUTHAPP_MFA_REQUIRED: every account must have a second factor. Until it has one, a signed-in
caller (by session or token) reaches only what sets one up, confirms the password for it, or
signs out: the routes marked `enrolment_allowed`. The rest answer 403 MFA_ENROLLMENT_REQUIRED
on the API and send a browser to the security page. Whether the user has a second factor is
resolved with the session or token itself (models/users.py's ACCOUNT_COLUMNS): no extra query."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from quart import ResponseReturnValue, current_app, redirect, request

from ..errors import APIError
from .errors import wants_json
from .guards import current_account

F = TypeVar("F", bound=Callable[..., object])

ENROLMENT_ATTRIBUTE = "_authapp_enrolment_allowed"
SECURITY_PAGE = "/account/security"
# Nobody's account is in these: the API docs, the health probes, development's outbox.
OPEN_BLUEPRINTS = frozenset({"docs", "health", "dev"})
# The pages' stylesheet and icon (the security page itself needs them) and the API's spec.
OPEN_ENDPOINTS = frozenset({"static", "openapi"})


def enrolment_allowed(func: F) -> F:
    """Mark a route that an account without its required second factor may still call."""
    setattr(func, ENROLMENT_ATTRIBUTE, True)
    return func


def is_enrolment_allowed(view: object) -> bool:
    return bool(getattr(view, ENROLMENT_ATTRIBUTE, False))


def enrolment_required() -> APIError:
    return APIError(
        403, "MFA_ENROLLMENT_REQUIRED",
        "This account must have a second factor: set up two-factor sign-in first.",
    )  # fmt: skip


async def enforce_mfa_enrolment() -> ResponseReturnValue | None:
    """A before-request hook, installed only while AUTHAPP_MFA_REQUIRED is on."""
    view = current_app.view_functions.get(request.endpoint or "")
    if (
        view is None
        or is_enrolment_allowed(view)
        or request.blueprint in OPEN_BLUEPRINTS
        or request.endpoint in OPEN_ENDPOINTS
    ):
        return None  # unknown paths (404), static files and the enrolment routes
    account = await current_account()
    if account is None or account.has_second_factor:
        return None
    if wants_json():
        raise enrolment_required()
    return redirect(SECURITY_PAGE)
