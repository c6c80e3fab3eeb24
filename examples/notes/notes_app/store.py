"""SQL for the notes table: a row dataclass and functions named by their verb."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from quart_db import Connection

_COLUMNS = "id, user_id, title, body, created_at, updated_at"


@dataclass(frozen=True)
class Note:
    id: UUID
    user_id: UUID
    title: str
    body: str
    created_at: datetime
    updated_at: datetime


async def select_notes_of_user(db: Connection, user_id: UUID) -> list[Note]:
    rows = await db.fetch_all(
        f"SELECT {_COLUMNS} FROM notes WHERE user_id = :user_id ORDER BY created_at DESC, id",  # noqa: S608
        {"user_id": user_id},
    )
    return [Note(**row) for row in rows]


async def select_note(db: Connection, user_id: UUID, note_id: UUID) -> Note | None:
    row = await db.fetch_first(
        f"SELECT {_COLUMNS} FROM notes WHERE id = :id AND user_id = :user_id",  # noqa: S608
        {"id": note_id, "user_id": user_id},
    )
    return None if row is None else Note(**row)


async def insert_note(db: Connection, user_id: UUID, title: str, body: str) -> Note:
    row = await db.fetch_first(
        f"""INSERT INTO notes (user_id, title, body) VALUES (:user_id, :title, :body)
            RETURNING {_COLUMNS}""",  # noqa: S608
        {"user_id": user_id, "title": title, "body": body},
    )
    assert row is not None  # an INSERT ... RETURNING returns its row
    return Note(**row)


async def update_note(
    db: Connection, user_id: UUID, note_id: UUID, title: str | None, body: str | None
) -> Note | None:
    row = await db.fetch_first(
        f"""UPDATE notes SET title = coalesce(:title, title), body = coalesce(:body, body),
                             updated_at = now()
             WHERE id = :id AND user_id = :user_id
         RETURNING {_COLUMNS}""",  # noqa: S608
        {"id": note_id, "user_id": user_id, "title": title, "body": body},
    )
    return None if row is None else Note(**row)


async def delete_note(db: Connection, user_id: UUID, note_id: UUID) -> bool:
    deleted = await db.fetch_val(
        "DELETE FROM notes WHERE id = :id AND user_id = :user_id RETURNING true",
        {"id": note_id, "user_id": user_id},
    )
    return bool(deleted)
