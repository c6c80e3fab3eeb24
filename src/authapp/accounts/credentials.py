"""When credentials change: the one step, in the transaction of the change, that ends what the
old credentials granted.

A password reset or change calls it, and so does turning a second factor on or off. An
intruder who knew the old password may hold a session, an API token, a trusted device, a
pending change of address that would hand them the account, a reset link or a sign-in
waiting for its second factor: all of them end here, so no path forgets one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args
from uuid import UUID

from quart_db import Connection

from ..config import Settings
from ..models.api_tokens import delete_api_tokens_of_user
from ..models.email_tokens import Purpose, update_email_tokens_used
from ..models.pending_sign_ins import delete_pending_sign_ins_of_user
from ..models.sessions import update_other_sessions_revoked, update_sessions_revoked_of_user
from ..models.users import update_user_security_stamp
from .sessions import liveness


@dataclass(frozen=True)
class Revoked:
    sessions: int
    tokens: int
    security_stamp: UUID  # the new one: device cookies that name the old one are untrusted


async def credentials_changed(
    connection: Connection,
    settings: Settings,
    user_id: UUID,
    *,
    keep_session: bytes | None,
    everything: bool = False,
) -> Revoked:
    """End every session of the user (but `keep_session`, the one making the change), every
    outstanding reset link, pending change of address and sign-in waiting for its second
    factor, the API tokens (unless AUTHAPP_REVOKE_TOKENS_ON_PASSWORD_CHANGE is off: scripts
    hold them) and the trust of every device; return what ended. `everything` (an operator
    switching the account off or on) takes every token and every mailed link too, whatever
    the setting: none of before may act after a reactivation."""
    # First, so this transaction holds the user's row from here on: a sign-in proved with the
    # old credentials writes its session only under the old stamp (models/sessions.py), so it
    # either committed before this (and is revoked below) or waits and then writes nothing.
    stamp = await update_user_security_stamp(connection, user_id)
    live = liveness(settings)
    if keep_session is None:
        sessions = await update_sessions_revoked_of_user(connection, user_id, live.now)
    else:
        sessions = await update_other_sessions_revoked(connection, user_id, keep_session, live)
    purposes: tuple[Purpose, ...] = (
        get_args(Purpose) if everything else ("reset_password", "change_email")
    )
    await update_email_tokens_used(connection, user_id, purposes, live.now)
    # A password proved under the old credentials no longer waits for its second factor.
    await delete_pending_sign_ins_of_user(connection, user_id)
    tokens = 0
    if everything or settings.revoke_tokens_on_password_change:
        tokens = await delete_api_tokens_of_user(connection, user_id)
    return Revoked(sessions, tokens, stamp)
