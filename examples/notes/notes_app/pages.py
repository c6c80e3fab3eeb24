"""The notes page: /notes, in authapp's layout, behind sign-in and CSRF like authapp's own."""

from __future__ import annotations

from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, ResponseReturnValue, redirect, render_template
from quart_auth import Unauthorized
from quart_rate_limiter import rate_limit
from quart_schema import DataSource, hide, validate_request

from authapp import auth_required, check_csrf, database, signed_in_account

from . import store
from .api import WRITES

bp = Blueprint("notes_pages", __name__, template_folder="templates")
bp.before_request(check_csrf)  # every form post carries the visitor's CSRF token


@bp.errorhandler(Unauthorized)
async def sign_in_first(error: Unauthorized) -> ResponseReturnValue:
    """A visitor without a session signs in first, and comes back here."""
    return redirect("/auth/login?" + urlencode({"next": "/notes"}, safe="/"))


@bp.get("/notes")
@auth_required()
@hide
async def notes() -> ResponseReturnValue:
    account = await signed_in_account()
    async with database().connection() as connection:
        found = await store.select_notes_of_user(connection, account.user_id)
    return await render_template("notes/index.html", notes=found)


class NoteForm(BaseModel):
    model_config = ConfigDict(extra="ignore")

    title: str = Field(min_length=1, max_length=200)
    body: str = Field(default="", max_length=10_000)


@bp.post("/notes")
@rate_limit(limits=WRITES)
@auth_required()
@hide
@validate_request(NoteForm, source=DataSource.FORM)
async def add_note(data: NoteForm) -> ResponseReturnValue:
    account = await signed_in_account()
    async with database().connection() as connection:
        await store.insert_note(connection, account.user_id, data.title, data.body)
    return redirect("/notes")
