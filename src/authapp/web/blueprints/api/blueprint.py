"""The JSON API's one blueprint (/api, cross-origin only for AUTHAPP_CORS_ORIGINS, state-changing
calls from other sites refused) and the shapes its resources share."""

from __future__ import annotations

from datetime import datetime
from typing import cast
from uuid import UUID

from pydantic import BaseModel
from quart import Response, request
from quart_cors import _after_request as answer_cors  # private: tests/test_cors.py pins it

from ....models.users import Account, User
from ...csrf import check_api_origin
from ...features import SwitchedBlueprint

bp = SwitchedBlueprint("api", __name__, url_prefix="/api")
bp.before_request(check_api_origin)


@bp.after_request
async def cross_origin_headers(response: Response) -> Response:
    """Cross-origin callers: only the origins in AUTHAPP_CORS_ORIGINS (none by default; see
    init_extensions), with credentials, so a trusted front end elsewhere may call the API.

    quart-cors (`cors(bp)`) decides, but it parses its settings on every answer, a twentieth
    of a signed-in request's CPU, and to a request without an Origin (a program, curl, a
    same-origin GET) all it ever adds is `Vary: Origin`: such answers get that here."""
    if "Origin" in request.headers:
        return cast(Response, await answer_cors(response))
    vary = response.headers.get("Vary")
    if vary is None:
        response.headers["Vary"] = "Origin"
    elif "origin" not in {name.strip().lower() for name in vary.split(",")}:
        response.headers["Vary"] = f"{vary}, Origin"
    return response


# Signing out takes the session cookie, and answers 204 without one too: `{}` says it is optional.
SESSION_IF_ANY: list[dict[str, list[str]]] = [{"sessionCookie": []}, {}]


class UserOut(BaseModel):
    """A user, as every route shows one (never the password hash)."""

    id: UUID
    email: str
    display_name: str
    email_verified: bool
    created_at: datetime

    @classmethod
    def of(cls, user: User | Account) -> UserOut:
        return cls(
            id=user.id if isinstance(user, User) else user.user_id,
            email=user.email,
            display_name=user.display_name,
            email_verified=user.email_verified_at is not None,
            created_at=user.created_at,
        )


class MessageOut(BaseModel):
    """An answer that tells a person what happens next."""

    message: str


CHECK_INBOX = "Check your inbox: we sent you a link to verify your address."
SENT_IF_KNOWN = "If an account uses this address, we have sent it a link."
