"""The JSON API's one blueprint (/api, cross-origin only for AUTHAPP_CORS_ORIGINS, state-changing
calls from other sites refused) and the shapes its resources share."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel
from quart_cors import cors

from ....models.users import Account, User
from ...csrf import check_api_origin
from ...features import SwitchedBlueprint

# Cross-origin callers: only the origins in AUTHAPP_CORS_ORIGINS (none by default; see
# init_extensions), with credentials, so a trusted front end elsewhere may call the API.
bp = cors(SwitchedBlueprint("api", __name__, url_prefix="/api"))
bp.before_request(check_api_origin)

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
