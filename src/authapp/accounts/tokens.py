"""Personal API tokens: create, resolve, list and revoke them.

A token is a recognisable prefix, 256 random bits and a CRC-32 of them (so secret scanners
can spot a leaked token, and a mistyped one is refused without a database lookup). It is shown
once; the database keeps only its SHA-256.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import zlib
from datetime import timedelta
from uuid import UUID

from ..config import Settings
from ..errors import APIError, validation_error
from ..infra import clock
from ..infra.batching import BatchLoader
from ..infra.database import Database
from ..models.api_tokens import (
    ApiToken,
    TokenAccount,
    count_live_tokens_of_user,
    delete_api_token,
    delete_expired_tokens_of_user,
    insert_api_token,
    select_live_token_accounts,
    select_live_tokens_of_user,
)
from ..models.users import Account
from . import audit
from .credentials import still_under
from .sessions import LAST_SEEN_RESOLUTION, TOKEN_BYTES

log = logging.getLogger("authapp.tokens")  # see authapp.infra.logs

# A scope names what a token may do: `<resource>:<action>`, lower case. Each app has its table
# (Scopes): authapp's own, and those the product registered on it (authapp.register_scope);
# every token form, check and document of that app reads it.
Scope = str
SCOPE_SHAPE = re.compile(r"^[a-z][a-z0-9_]{0,30}:[a-z][a-z0-9_]{0,30}$")
BUILTIN_SCOPES: dict[Scope, str] = {
    "profile:read": "Read your profile and security events (GET /api/me, /api/me/events).",
    "profile:write": "Change your display name (PATCH /api/me).",
    "sessions:read": "List your sessions (GET /api/sessions).",
    "sessions:write": "Revoke one of your sessions (DELETE /api/sessions/{id}).",
}
# Permissions are scopes a user holds through their roles (accounts/roles.py), not by signing
# in: a route guarded by one (auth_required(permission=...)) takes a session of a user who
# holds it, or a token of such a user that also has it as a scope. The built-in `admin` role
# holds these four (migration 8); a product registers its own (authapp.register_permission).
BUILTIN_PERMISSIONS: dict[Scope, str] = {
    "users:read": "Administration: find users and see their accounts (GET /api/admin/...).",
    "users:write": "Administration: deactivate, reset and delete other users' accounts.",
    "roles:write": "Administration: grant and take away roles.",
    "audit:read": "Administration: read other users' security events.",
}


class Scopes:
    """The scopes the tokens of one app may have, in the order they were registered."""

    def __init__(self) -> None:
        self._described = {**BUILTIN_SCOPES, **BUILTIN_PERMISSIONS}
        self._permissions = set(BUILTIN_PERMISSIONS)

    def register(self, name: str, description: str, *, permission: bool = False) -> Scope:
        """Add a scope (a product's own, such as `notes:write`), or with `permission` one that
        only users who hold it through a role may use; the same registration twice is
        harmless, another description or kind for a known scope is an error."""
        if not SCOPE_SHAPE.match(name):
            raise ValueError(f"a scope looks like 'notes:write' (lower case), not {name!r}")
        known = self._described.get(name)
        if known is not None and (known != description or permission != self.is_permission(name)):
            raise ValueError(f"the scope {name!r} is registered already, as {known!r}")
        self._described[name] = description
        if permission:
            self._permissions.add(name)
        return name

    def names(self) -> tuple[Scope, ...]:
        return tuple(self._described)

    def is_permission(self, name: str) -> bool:
        return name in self._permissions

    def permissions(self) -> tuple[Scope, ...]:
        return tuple(name for name in self._described if name in self._permissions)

    def described(self, holding: list[str] | None = None) -> dict[Scope, str]:
        """Every scope; with `holding`, only the permissions among them that it names (what a
        user with those permissions may put in a token)."""
        return {name: text for name, text in self._described.items()
                if holding is None or name not in self._permissions or name in holding}  # fmt: skip

    def check(self, name: str) -> Scope:
        """`name`, or a ValueError (a validation error of the field that named it)."""
        if name not in self._described:
            # As pydantic words a wrong choice, which this was when the scopes were fixed.
            quoted = [f"'{known}'" for known in self._described]
            choices = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
            raise ValueError(f"Input should be {choices}")
        return name

    def __len__(self) -> int:
        return len(self._described)


TOKEN_PREFIX = "authapp_pat_"  # noqa: S105 (a public prefix, not a secret)
MAX_TOKENS_PER_USER = 50
_TOKEN_RE = re.compile(rf"^{TOKEN_PREFIX}([A-Za-z0-9_-]{{43}})([0-9a-f]{{8}})$")


def _checksum(body: str) -> str:
    return f"{zlib.crc32(body.encode('ascii')):08x}"


def new_api_token() -> str:
    body = secrets.token_urlsafe(TOKEN_BYTES)
    return f"{TOKEN_PREFIX}{body}{_checksum(body)}"


def api_token_hash(token: str) -> bytes | None:
    """The database key of a token (its SHA-256), or None for anything not shaped like one."""
    match = _TOKEN_RE.match(token)
    if match is None or not secrets.compare_digest(match[2], _checksum(match[1])):
        return None
    return hashlib.sha256(token.encode("ascii")).digest()


class TokenLookups:
    """Resolves bearer tokens to live tokens and their users, the lookups of requests that
    arrive together in one statement (BatchLoader)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._loader: BatchLoader[bytes, None, TokenAccount] = BatchLoader(self._load)

    async def resolve(self, token: str) -> TokenAccount | None:
        """The live token's user and scopes; marks it used (at most once a minute)."""
        token_hash = api_token_hash(token)
        if token_hash is None:
            return None
        return await self._loader.get(token_hash, None)

    async def _load(self, asked: dict[bytes, None]) -> dict[bytes, TokenAccount]:
        now = clock.utcnow()
        async with self._db.connection() as connection:
            return await select_live_token_accounts(
                connection, list(asked), now, touch_before=now - LAST_SEEN_RESOLUTION
            )


async def create_api_token(
    db: Database,
    settings: Settings,
    account: Account,
    *,
    name: str,
    scopes: list[Scope],
    expires_in_days: int | None,
    known: Scopes,
) -> tuple[ApiToken, str]:
    """Create a token with some of the app's `known` scopes; return it as listed and the token
    itself, which is never shown again."""
    for scope in scopes:
        known.check(scope)
        if known.is_permission(scope) and scope not in account.permissions:
            # It would do nothing (a permission also needs its role), and says what it is not.
            raise validation_error(
                "scopes", f"You do not hold the permission {scope}.", "permission"
            )
    days = settings.token_lifetime_days if expires_in_days is None else expires_in_days
    if not 1 <= days <= settings.token_max_lifetime_days:
        raise validation_error(
            "expires_in_days",
            f"A token lives between 1 and {settings.token_max_lifetime_days} days.",
            "range",
        )
    token = new_api_token()
    token_hash = api_token_hash(token)
    assert token_hash is not None  # new_api_token() makes tokens of exactly that shape
    now = clock.utcnow()
    async with db.transaction() as connection:
        await still_under(connection, account)  # a reset racing this ends the token, or wins
        await delete_expired_tokens_of_user(connection, account.user_id, now)
        if await count_live_tokens_of_user(connection, account.user_id, now) >= MAX_TOKENS_PER_USER:
            raise APIError(
                409, "TOO_MANY_TOKENS",
                f"You have {MAX_TOKENS_PER_USER} tokens; revoke one you no longer use first.",
            )  # fmt: skip
        created = await insert_api_token(
            connection,
            token_hash=token_hash,
            user_id=account.user_id,
            name=name,
            scopes=sorted(set(scopes), key=known.names().index),
            now=now,
            expires_at=now + timedelta(days=days),
        )
        if created is not None:
            await audit.record(
                connection, account.user_id, "token_created", token_id=str(created.id),
                name=created.name, scopes=created.scopes,
            )  # fmt: skip
    if created is None:
        raise APIError(409, "TOKEN_NAME_TAKEN", "You already have a token with this name.")
    log.info("user %s created API token %s", account.user_id, created.id)
    return created, token


async def list_api_tokens(db: Database, account: Account) -> list[ApiToken]:
    async with db.connection() as connection:
        return await select_live_tokens_of_user(connection, account.user_id, clock.utcnow())


async def revoke_api_token(db: Database, account: Account, token_id: UUID) -> None:
    async with db.transaction() as connection:
        name = await delete_api_token(connection, account.user_id, token_id)
        if name is not None:
            await audit.record(
                connection, account.user_id, "token_revoked", token_id=str(token_id), name=name
            )
    if name is None:
        raise APIError(404, "TOKEN_NOT_FOUND", "You have no token with this id.")
    log.info("user %s revoked API token %s", account.user_id, token_id)
