"""Security events: what happened to an account, when, from which address and device; and the
one place account events become signals (authapp.signals).

Services record an event on the connection of the change it reports, inside its transaction
where there is one, so an event exists exactly when its change does; its signal is sent once
that unit of work has committed (infra/database.py's after_commit). A few events the security
log does not keep (a registration, a verified address, a deleted account) are only announced,
from here too. The address and the User-Agent come from the request being served (context.py).
Events older than AUTHAPP_SECURITY_EVENT_RETENTION_DAYS are swept away by every worker every
30 to 60 minutes, in batches, through an index on their time; they die with their user (ON
DELETE CASCADE).
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, get_args
from uuid import UUID

from blinker import NamedSignal
from quart_db import Connection

from .. import signals
from ..config import Settings
from ..errors import validation_error
from ..infra import clock
from ..infra.clients import clean_ip, device_name
from ..infra.context import current_request
from ..infra.database import Database, after_commit
from ..infra.outages import DatabaseUnavailable
from ..models.security_events import (
    delete_security_events_before,
    insert_security_event,
    select_security_events_of_user,
)

log = logging.getLogger("authapp.audit")  # see authapp.infra.logs

EventKind = Literal[
    "login_succeeded",
    "login_failed",
    "logout",
    "account_locked",
    "password_check_failed",
    "reauthenticated",
    "password_changed",
    "password_reset",
    "email_change_requested",
    "email_change_confirmed",
    "session_revoked",
    "sessions_revoked",
    "token_created",
    "token_revoked",
    "account_deactivated",
    "account_activated",
    "mfa_enabled",
    "mfa_disabled",
    "recovery_codes_regenerated",
    "recovery_code_used",
    "mfa_failed",
    "roles_changed",
    "access_reset",
    "password_reset_sent",
    "admin_action",
    "passkey_added",
    "passkey_removed",
    "passkey_sign_in",
    "passkey_failed",
]
EVENT_KINDS: tuple[EventKind, ...] = get_args(EventKind)
SWEEP_EVERY = 3600  # seconds at most between sweeps; at random from half that, so workers spread
SWEEP_BATCH = 10_000


# The signal of each kind of security event (two kinds may share one: `event.kind` tells).
SIGNALS: dict[EventKind, NamedSignal] = {
    "login_succeeded": signals.signed_in,
    "login_failed": signals.sign_in_failed,
    "logout": signals.signed_out,
    "account_locked": signals.locked_out,
    "password_check_failed": signals.sign_in_failed,
    "reauthenticated": signals.reauthenticated,
    "password_changed": signals.password_changed,
    "password_reset": signals.password_reset,
    "email_change_requested": signals.email_change_requested,
    "email_change_confirmed": signals.email_changed,
    "session_revoked": signals.session_revoked,
    "sessions_revoked": signals.session_revoked,
    "token_created": signals.token_created,
    "token_revoked": signals.token_revoked,
    "account_deactivated": signals.account_deactivated,
    "account_activated": signals.account_activated,
    "mfa_enabled": signals.mfa_enabled,
    "mfa_disabled": signals.mfa_disabled,
    "recovery_codes_regenerated": signals.recovery_codes_regenerated,
    "recovery_code_used": signals.recovery_code_used,
    "mfa_failed": signals.mfa_failed,
    "roles_changed": signals.roles_changed,
    "access_reset": signals.access_reset,
    "password_reset_sent": signals.password_reset_sent,
    "admin_action": signals.admin_action,
    "passkey_added": signals.passkey_added,
    "passkey_removed": signals.passkey_removed,
    "passkey_sign_in": signals.passkey_sign_in,
    "passkey_failed": signals.passkey_failed,
}


async def record(connection: Connection, user_id: UUID, kind: EventKind, **details: Any) -> None:
    """Add an event of the user, from the current request's client (if any); its signal goes
    out once the unit of work commits."""
    request = current_request()
    now = clock.utcnow()
    ip = clean_ip(request.remote_addr) if request else None
    await insert_security_event(
        connection,
        user_id=user_id,
        kind=kind,
        now=now,
        ip=ip,
        user_agent=request.user_agent if request else None,
        details=details,
    )
    recorded(user_id, kind, now=now, **details)


def recorded(
    user_id: UUID, kind: EventKind, *, now: datetime | None = None, **details: Any
) -> None:
    """Send the signal of an event that a statement of its own change wrote (a sign-in writes
    its event with its session), once the unit of work commits."""
    _signal_after_commit(SIGNALS[kind], user_id, kind, now, details)


def announce(user_id: UUID, signal: NamedSignal, **details: Any) -> None:
    """Send `signal` for a change the security log does not keep, once it commits."""
    _signal_after_commit(signal, user_id, None, None, details)


def _signal_after_commit(
    signal: NamedSignal,
    user_id: UUID,
    kind: str | None,
    now: datetime | None,
    details: dict[str, Any],
) -> None:
    if not signal.receivers:  # nobody listens: no work after every commit
        return
    request = current_request()
    event = signals.AccountEvent(
        name=str(signal.name), kind=kind, user_id=user_id, at=now or clock.utcnow(),
        details=details, ip=clean_ip(request.remote_addr) if request else None,
        user_agent=request.user_agent if request else None,
        request_id=request.request_id if request else None,
    )  # fmt: skip
    after_commit(lambda: signals.send(signal, event))


@dataclass(frozen=True)
class SecurityEvent:
    id: UUID
    kind: str
    created_at: datetime
    ip: str | None
    device: str | None
    details: dict[str, Any]


@dataclass(frozen=True)
class EventPage:
    events: list[SecurityEvent]
    more: bool  # whether older events follow the last one


async def list_events(db: Database, user_id: UUID, *, before: UUID | None, limit: int) -> EventPage:
    """The user's events, newest first: `limit` of them, older than the event `before`."""
    async with db.connection() as connection:
        rows = await select_security_events_of_user(
            connection, user_id, before=before, limit=limit + 1
        )
    if rows is None:
        raise validation_error("before", "You have no event with this id.", "unknown")
    events = [
        SecurityEvent(
            id=row.id,
            kind=row.kind,
            created_at=row.created_at,
            ip=row.ip,
            device=device_name(row.user_agent) if row.user_agent else None,
            details=row.details,
        )
        for row in rows[:limit]
    ]
    return EventPage(events, more=len(rows) > limit)


async def prune(db: Database, settings: Settings) -> int:
    """Delete every event older than the retention, in batches; return how many went."""
    cutoff = clock.utcnow() - timedelta(days=settings.security_event_retention_days)
    total = 0
    while True:
        async with db.connection() as connection:
            deleted = await delete_security_events_before(connection, cutoff, SWEEP_BATCH)
        total += deleted
        if deleted < SWEEP_BATCH:
            break
    if total:
        log.info("pruned %d security events older than %s", total, cutoff.date())
    return total


async def sweep_forever(db: Database, settings: Settings) -> None:
    """Prune every 30 to 60 minutes, for as long as the app serves."""
    while True:
        await asyncio.sleep(SWEEP_EVERY * random.uniform(0.5, 1.0))  # noqa: S311 (not a secret)
        try:
            await prune(db, settings)
        except DatabaseUnavailable:  # the outage log has said so; the next sweep tries again
            continue
        except Exception:  # nor must anything else end the sweeping for good
            log.warning("pruning security events failed; trying again later", exc_info=True)
