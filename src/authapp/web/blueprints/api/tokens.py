"""The JSON API's tokens resource: personal API tokens for scripts and programs."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field
from quart_rate_limiter import rate_limit
from quart_schema import (
    document_response,
    tag,
    validate_request,
    validate_response,
)

from ....accounts import tokens
from ....state import state
from ...errors import documents_errors
from ...features import feature
from ...guards import auth_required, signed_in_session
from ...limits import (
    WRITE_LIMITS,
)
from ...schemas import NoContent, ScopeList, TokenName
from .blueprint import bp


class TokenCreateIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    name: TokenName
    scopes: ScopeList = Field(min_length=1)
    expires_in_days: int | None = Field(
        default=None,
        description="1 to AUTHAPP_TOKEN_MAX_LIFETIME_DAYS (365); "
        "AUTHAPP_TOKEN_LIFETIME_DAYS (30) when left out.",
    )


class TokenOut(BaseModel):
    """An API token as listed: never the token itself."""

    id: UUID
    name: str
    scopes: list[str]
    created_at: datetime
    last_used_at: datetime | None = Field(description="Kept to the minute.")
    expires_at: datetime


class TokenCreatedOut(TokenOut):
    token: str = Field(description="Shown this once; send it as `Authorization: Bearer <token>`.")


class TokensOut(BaseModel):
    tokens: list[TokenOut]


@bp.post("/tokens")
@feature("api_tokens")
@rate_limit(limits=WRITE_LIMITS)
@auth_required(fresh=True)
@tag(["tokens"])
@validate_request(TokenCreateIn)
@validate_response(TokenCreatedOut, 201)
@documents_errors(400, 401, 403, 409, 429)
async def create_token(data: TokenCreateIn) -> tuple[TokenCreatedOut, int]:
    """Create a personal API token for scripts and other programs.

    The answer holds the token, which is never shown again. Needs a fresh sign-in.
    409 `TOKEN_NAME_TAKEN` or `TOO_MANY_TOKENS` (50 at most).
    """
    app_state = state()
    created, token = await tokens.create_api_token(
        app_state.db, app_state.settings, await signed_in_session(),
        name=data.name, scopes=data.scopes, expires_in_days=data.expires_in_days,
        known=app_state.scopes,
    )  # fmt: skip
    listed = TokenOut.model_validate(created, from_attributes=True)
    return TokenCreatedOut(**listed.model_dump(), token=token), 201


@bp.get("/tokens")
@feature("api_tokens")
@auth_required()
@tag(["tokens"])
@validate_response(TokensOut, 200)
@documents_errors(401, 403)
async def list_tokens() -> TokensOut:
    """List your live API tokens, the newest first (never the tokens themselves)."""
    found = await tokens.list_api_tokens(state().db, await signed_in_session())
    return TokensOut(tokens=[TokenOut.model_validate(item, from_attributes=True)
                             for item in found])  # fmt: skip


@bp.delete("/tokens/<uuid:token_id>")
@feature("api_tokens")
@rate_limit(limits=WRITE_LIMITS)
@auth_required()
@tag(["tokens"])
@document_response(NoContent, 204)
@documents_errors(401, 403, 404, 429)
async def revoke_token(token_id: UUID) -> tuple[str, int]:
    """Revoke a token: it stops working at once.

    404 `TOKEN_NOT_FOUND`.
    """
    await tokens.revoke_api_token(state().db, await signed_in_session(), token_id)
    return "", 204
