"""The notes resource of the JSON API: /api/notes, for a session or a token with the notes
scopes, documented in authapp's OpenAPI spec beside authapp's own routes."""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint
from quart_rate_limiter import RateLimit, rate_limit
from quart_schema import document_response, tag, validate_request, validate_response

from authapp import (
    APIError,
    NoContent,
    auth_required,
    check_api_origin,
    database,
    documents_errors,
    signed_in_account,
)

from . import store

# The notes' own scopes, registered on the app by create_app (an app refuses to serve a route
# that names a scope it does not have), so a token form offers them.
NOTES_READ = "notes:read"
NOTES_WRITE = "notes:write"
SCOPES = {
    NOTES_READ: "Read your notes (GET /api/notes).",
    NOTES_WRITE: "Write and delete your notes (/api/notes).",
}

bp = Blueprint("notes_api", __name__, url_prefix="/api/notes")
bp.before_request(check_api_origin)  # state-changing calls from other sites are refused
# Per client address (the limiter's default key) and route.
WRITES = [RateLimit(60, timedelta(minutes=1))]


class NoteIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    title: str = Field(min_length=1, max_length=200)
    body: str = Field(default="", max_length=10_000)


class NotePatch(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    title: str | None = Field(default=None, min_length=1, max_length=200)
    body: str | None = Field(default=None, max_length=10_000)


class NoteOut(BaseModel):
    """A note, as every route shows one."""

    id: UUID
    title: str
    body: str
    created_at: datetime
    updated_at: datetime


class NotesOut(BaseModel):
    notes: list[NoteOut]


def note_not_found() -> APIError:
    return APIError(404, "NOTE_NOT_FOUND", "You have no note with this id.")


@bp.get("")
@auth_required(NOTES_READ)
@tag(["notes"])
@validate_response(NotesOut, 200)
@documents_errors(401, 403)
async def list_notes() -> NotesOut:
    """List your notes, the newest first."""
    account = await signed_in_account()
    async with database().connection() as connection:
        notes = await store.select_notes_of_user(connection, account.user_id)
    return NotesOut(notes=[NoteOut.model_validate(note, from_attributes=True) for note in notes])


@bp.post("")
@rate_limit(limits=WRITES)
@auth_required(NOTES_WRITE)
@tag(["notes"])
@validate_request(NoteIn)
@validate_response(NoteOut, 201)
@documents_errors(400, 401, 403, 429)
async def create_note(data: NoteIn) -> tuple[NoteOut, int]:
    """Write a note."""
    account = await signed_in_account()
    async with database().connection() as connection:
        note = await store.insert_note(connection, account.user_id, data.title, data.body)
    return NoteOut.model_validate(note, from_attributes=True), 201


@bp.get("/<uuid:note_id>")
@auth_required(NOTES_READ)
@tag(["notes"])
@validate_response(NoteOut, 200)
@documents_errors(401, 403, 404)
async def get_note(note_id: UUID) -> NoteOut:
    """Read one of your notes; 404 `NOTE_NOT_FOUND` for anybody else's."""
    account = await signed_in_account()
    async with database().connection() as connection:
        note = await store.select_note(connection, account.user_id, note_id)
    if note is None:
        raise note_not_found()
    return NoteOut.model_validate(note, from_attributes=True)


@bp.patch("/<uuid:note_id>")
@rate_limit(limits=WRITES)
@auth_required(NOTES_WRITE)
@tag(["notes"])
@validate_request(NotePatch)
@validate_response(NoteOut, 200)
@documents_errors(400, 401, 403, 404, 429)
async def update_note(note_id: UUID, data: NotePatch) -> NoteOut:
    """Change the title or the body of one of your notes."""
    account = await signed_in_account()
    async with database().connection() as connection:
        note = await store.update_note(connection, account.user_id, note_id, data.title, data.body)
    if note is None:
        raise note_not_found()
    return NoteOut.model_validate(note, from_attributes=True)


@bp.delete("/<uuid:note_id>")
@rate_limit(limits=WRITES)
@auth_required(NOTES_WRITE)
@tag(["notes"])
@document_response(NoContent, 204)
@documents_errors(401, 403, 404, 429)
async def delete_note(note_id: UUID) -> tuple[str, int]:
    """Delete one of your notes."""
    account = await signed_in_account()
    async with database().connection() as connection:
        deleted = await store.delete_note(connection, account.user_id, note_id)
    if not deleted:
        raise note_not_found()
    return "", 204
