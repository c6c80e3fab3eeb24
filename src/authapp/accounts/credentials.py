"""When credentials change: the one step, in the transaction of the change, that ends what the
old credentials granted.

A password reset or change calls it, and so does turning a second factor or a passkey on or
off, and an operator switching an account off or on. An intruder who knew the old password may
hold a session, an API token, a trusted device, a pending change of address that would hand
them the account, a reset link or a sign-in waiting for its second factor: all of them end
here, so no path forgets one.

Ending what exists is not enough when the intruder is mid-request: their password proved (or
their session resolved) just before the owner's reset landed, their write just after it. So
the step starts by replacing the security stamp, which holds the account's row to the end of
the transaction, and whatever grants something on behalf of credentials is written only under
the stamp it was proved with: a sign-in's session (models/sessions.py), an API token
(`still_under`), a mailed link (checked on use: `ENDED_BY_A_CHANGE`), and a change made from a
session (`by`) all lose to a change that committed first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args
from uuid import UUID

from quart_db import Connection

from ..config import Settings
from ..errors import APIError
from ..models.api_tokens import delete_api_tokens_of_user
from ..models.email_tokens import Purpose, update_email_tokens_used
from ..models.pending_sign_ins import delete_pending_sign_ins_of_user
from ..models.sessions import (
    SessionAccount,
    update_other_sessions_revoked,
    update_sessions_revoked_of_user,
)
from ..models.users import Account, lock_user_under_stamp, update_user_security_stamp
from .sessions import liveness

# The mailed links a change of credentials ends (all of them when an operator switches the
# account off or on); a verification link survives a new password.
ENDED_BY_A_CHANGE: tuple[Purpose, ...] = ("reset_password", "change_email")


@dataclass(frozen=True)
class Revoked:
    sessions: int
    tokens: int
    security_stamp: UUID  # the new one: device cookies that name the old one are untrusted


def changed_meanwhile() -> APIError:
    return APIError(
        409,
        "CREDENTIALS_CHANGED",
        "The account's password or second factor changed while this was being done. "
        "Sign in again, then retry.",
    )


async def still_under(connection: Connection, account: Account) -> None:
    """Before this transaction grants something on behalf of `account` (an API token, say):
    hold the account under the stamp its credential was resolved with, or raise
    CREDENTIALS_CHANGED. A change of credentials then either waits for this transaction and
    ends what it granted, or committed first, and this grants nothing."""
    if not await lock_user_under_stamp(connection, account.user_id, account.security_stamp):
        raise changed_meanwhile()


async def credentials_changed(
    connection: Connection,
    settings: Settings,
    user_id: UUID,
    *,
    by: SessionAccount | None,
    everything: bool = False,
) -> Revoked:
    """End every session of the user (but `by`'s, the session making the change), every
    outstanding reset link, pending change of address and sign-in waiting for its second
    factor, the API tokens (unless AUTHAPP_REVOKE_TOKENS_ON_PASSWORD_CHANGE is off: scripts
    hold them) and the trust of every device; return what ended. `everything` (an operator
    switching the account off or on) takes every token and every mailed link too, whatever
    the setting: none of before may act after a reactivation.

    A change made from a session (`by`) stands only while the credentials are those the
    session was resolved under: if another change committed meanwhile (the owner's reset,
    while an intruder's session was changing the password), CREDENTIALS_CHANGED, and the
    caller's transaction writes nothing. A reset link or an operator (`by` None) always wins.
    """
    # First, so this transaction holds the user's row from here on (see the module's text).
    stamp = await update_user_security_stamp(
        connection, user_id, None if by is None else by.security_stamp
    )
    if stamp is None:
        raise changed_meanwhile()
    live = liveness(settings)
    if by is None:
        sessions = await update_sessions_revoked_of_user(connection, user_id, live.now)
    else:
        sessions = await update_other_sessions_revoked(connection, user_id, by.session_id, live)
    purposes = get_args(Purpose) if everything else ENDED_BY_A_CHANGE
    await update_email_tokens_used(connection, user_id, purposes, live.now)
    # A password proved under the old credentials no longer waits for its second factor.
    await delete_pending_sign_ins_of_user(connection, user_id)
    tokens = 0
    if everything or settings.revoke_tokens_on_password_change:
        tokens = await delete_api_tokens_of_user(connection, user_id)
    return Revoked(sessions, tokens, stamp)
