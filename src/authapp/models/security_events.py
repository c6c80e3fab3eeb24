"""SQL for the security_events table: what happened to an account, when and from where."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from quart_db import Connection


@dataclass(frozen=True)
class SecurityEventRow:
    id: UUID
    kind: str
    created_at: datetime
    ip: str | None
    user_agent: str | None
    details: dict[str, Any]


async def insert_security_event(
    db: Connection,
    *,
    user_id: UUID,
    kind: str,
    now: datetime,
    ip: str | None,
    user_agent: str | None,
    details: dict[str, Any],
) -> None:
    await db.execute(
        """INSERT INTO security_events (user_id, kind, created_at, ip, user_agent, details)
                VALUES (:user_id, :kind, :now, CAST(:ip AS inet), :user_agent, :details)""",
        {"user_id": user_id, "kind": kind, "now": now, "ip": ip, "user_agent": user_agent,
         "details": details},
    )  # fmt: skip


async def select_security_events_of_user(
    db: Connection, user_id: UUID, *, before: UUID | None, limit: int
) -> list[SecurityEventRow] | None:
    """Up to `limit` events of the user, newest first, older than the event `before` when
    given; None when `before` is not an event of theirs (or has been pruned)."""
    if before is None:
        cursor = "true"
    else:
        found = await db.fetch_val(
            "SELECT true FROM security_events WHERE id = :before AND user_id = :user_id",
            {"before": before, "user_id": user_id},
        )
        if not found:
            return None
        cursor = """(created_at, seq) < (SELECT created_at, seq FROM security_events
                                          WHERE id = :before)"""
    rows = await db.fetch_all(
        f"""SELECT id, kind, created_at, host(ip) AS ip, user_agent, details
              FROM security_events
             WHERE user_id = :user_id AND {cursor}
          ORDER BY created_at DESC, seq DESC
             LIMIT :limit""",  # noqa: S608 (a fixed fragment; values are bound)
        {"user_id": user_id, "limit": limit, **({"before": before} if before else {})},
    )
    return [SecurityEventRow(**row) for row in rows]


async def delete_security_events_before(db: Connection, cutoff: datetime, batch: int) -> int:
    """Delete up to `batch` events older than `cutoff` (everyone's); return how many went."""
    deleted = await db.fetch_val(
        """WITH doomed AS (
               SELECT id FROM security_events WHERE created_at < :cutoff LIMIT :batch
           ), deleted AS (
               DELETE FROM security_events WHERE id IN (SELECT id FROM doomed) RETURNING 1
           )
           SELECT count(*) FROM deleted""",
        {"cutoff": cutoff, "batch": batch},
    )
    return int(deleted or 0)
