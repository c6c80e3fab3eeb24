"""Signals: the account events a product built on authapp subscribes to, with blinker (as
Quart's own signals).

Each is sent from one place, accounts/audit.py, where the account's security event is recorded
(or, for the few events the security log does not keep, announced), and only after the unit of
work that recorded it has committed: a receiver never sees a change that was rolled back, and
reading the database from it finds the change. The sender is the app; the one argument,
`event`, is an `AccountEvent`. A receiver may be a function or a coroutine function; one that
raises is logged and changes nothing, for the request or for the other receivers.

    from authapp import signals

    @signals.registered.connect
    async def welcome(app, event):
        ...  # event.user_id, event.details, event.ip, event.request_id
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from blinker import NamedSignal, Namespace
from quart import current_app, has_app_context

log = logging.getLogger("authapp.signals")

namespace = Namespace()

registered = namespace.signal("registered", doc="An account was created (sign-up or the CLI).")
signed_in = namespace.signal("signed_in", doc="A password sign-in started a session.")
signed_out = namespace.signal("signed_out", doc="A session signed out.")
sign_in_failed = namespace.signal(
    "sign_in_failed",
    doc="A wrong (or, on a locked account, unchecked) password for a known account, at sign-in "
    "or in a signed-in check of the current password.",
)
reauthenticated = namespace.signal("reauthenticated", doc="A session proved the password again.")
locked_out = namespace.signal("locked_out", doc="Wrong passwords locked the account.")
password_changed = namespace.signal("password_changed", doc="The password was changed.")
password_reset = namespace.signal("password_reset", doc="The password was reset by mailed link.")
email_verified = namespace.signal("email_verified", doc="The address was verified.")
email_change_requested = namespace.signal(
    "email_change_requested", doc="A move to a new address was asked for."
)
email_changed = namespace.signal("email_changed", doc="The account moved to a new address.")
session_revoked = namespace.signal(
    "session_revoked", doc="One session, or every (other) session, was revoked."
)
token_created = namespace.signal("token_created", doc="An API token was created.")
token_revoked = namespace.signal("token_revoked", doc="An API token was revoked.")
account_deactivated = namespace.signal("account_deactivated", doc="An operator deactivated it.")
account_activated = namespace.signal("account_activated", doc="An operator reactivated it.")
account_deleted = namespace.signal("account_deleted", doc="The account was deleted.")
mfa_enabled = namespace.signal("mfa_enabled", doc="A second factor was turned on.")
mfa_disabled = namespace.signal("mfa_disabled", doc="A second factor was turned off.")
recovery_codes_regenerated = namespace.signal(
    "recovery_codes_regenerated", doc="A new set of recovery codes replaced the old one."
)
recovery_code_used = namespace.signal("recovery_code_used", doc="A recovery code was used.")
mfa_failed = namespace.signal(
    "mfa_failed", doc="A wrong (or, on a locked account, unchecked) second factor was given."
)
passkey_added = namespace.signal("passkey_added", doc="A passkey was added to the account.")
passkey_removed = namespace.signal("passkey_removed", doc="A passkey was removed.")
passkey_sign_in = namespace.signal(
    "passkey_sign_in", doc="A passkey signed in, alone or as the second factor."
)
passkey_failed = namespace.signal(
    "passkey_failed",
    doc="One of the account's passkeys gave a wrong answer (a bad signature, a counter gone "
    "back, a user handle of another account).",
)

roles_changed = namespace.signal(
    "roles_changed", doc="Roles were granted or taken away (an administrator or the CLI)."
)
access_reset = namespace.signal(
    "access_reset",
    doc="An administrator ended every session, token, second factor and pending sign-in.",
)
password_reset_sent = namespace.signal(
    "password_reset_sent", doc="An administrator mailed the user a link to reset the password."
)
admin_action = namespace.signal(
    "admin_action", doc="An administrator acted on another account (sent for the administrator)."
)


@dataclass(frozen=True)
class AccountEvent:
    """What happened to which account, when, and from which client (None outside a request)."""

    name: str  # the signal's name
    kind: str | None  # the security event's kind (GET /api/me/events), if the log keeps one
    user_id: UUID
    at: datetime
    details: dict[str, Any] = field(default_factory=dict)
    ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None


async def send(signal: NamedSignal, event: AccountEvent) -> None:
    """Call each receiver of `signal` with the app and `event`; log (never raise) a failure."""
    sender = current_app._get_current_object() if has_app_context() else None  # type: ignore[attr-defined]
    for receiver in list(signal.receivers_for(sender)):
        try:
            result = receiver(sender, event=event)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception(
                "a receiver of the %s signal failed (%s); nothing was undone",
                signal.name, getattr(receiver, "__qualname__", receiver),
            )  # fmt: skip
