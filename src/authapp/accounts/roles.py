"""Roles and permissions: which roles exist, who holds which, and the rules of changing that.

A permission (`users:read`) is a scope only a role gives (tokens.py's Scopes keeps both); a
user's permissions are resolved with every session or token (models/users.py's
ACCOUNT_COLUMNS), so granting or taking a role counts on the very next request.

The rules of an administrator acting on another account, kept here for every act
(admin.py's and the roles'): the actor's permissions are read again inside the act's
transaction, after the lock every change to the set of admins takes (models/roles.py's
lock_admins), so an administrator demoted or deactivated a moment ago acts no more; nobody
acts on their own account here (their own account's routes do that), nor on an account
that holds a permission they lack, nor grants or takes a role holding one; and nothing
leaves the app without an active admin (409 `LAST_ADMIN`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from uuid import UUID

from quart_db import Connection

from ..errors import APIError, validation_error
from ..infra import clock
from ..infra.database import Database
from ..models.roles import (
    ADMIN_ROLE,
    Grant,
    Role,
    count_other_active_admins,
    delete_user_role,
    insert_role,
    insert_user_role,
    lock_admins,
    select_grants_of_user,
    select_permissions_of_roles,
    select_permissions_of_user,
    select_roles,
)
from ..models.users import User, select_user_by_email_key, select_user_by_id
from . import audit
from .emails import email_key
from .tokens import Scopes

log = logging.getLogger("authapp.roles")  # see authapp.infra.logs

ROLE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
BY_ADMINISTRATOR = "administrator"  # the `by` of an event an administrator caused


def user_not_found() -> APIError:
    return APIError(404, "USER_NOT_FOUND", "There is no user with this id.")


def forbidden(message: str) -> APIError:
    return APIError(403, "FORBIDDEN", message)


def last_admin() -> APIError:
    return APIError(
        409, "LAST_ADMIN", "This is the last active admin: grant another account admin first."
    )


async def list_roles(db: Database) -> list[Role]:
    async with db.connection() as connection:
        return await select_roles(connection)


async def create_role(
    db: Database, known: Scopes, name: str, description: str, permissions: list[str]
) -> Role:
    """A new role holding some of the app's permissions (authapp's, or a product's)."""
    if not ROLE_NAME.match(name):
        raise validation_error(
            "name", "A role's name is lower case letters, digits, - and _ (up to 40).", "shape"
        )
    for permission in permissions:
        if not known.is_permission(permission):
            names = ", ".join(known.permissions())
            raise validation_error(
                "permissions", f"{permission} is no permission; there are {names}.", "unknown"
            )
    async with db.connection() as connection:
        role = await insert_role(connection, name, description, sorted(set(permissions)))
    if role is None:
        raise APIError(409, "ROLE_EXISTS", f"There is a role named {name} already.")
    log.info("role %s created with %s", name, ", ".join(role.permissions) or "no permissions")
    return role


@dataclass(frozen=True)
class Act:
    """An administrator's act on another user, authorised inside its transaction."""

    actor_id: UUID
    actor_permissions: frozenset[str]
    target: User  # as it was before the act
    target_is_admin: bool


async def authorize(
    connection: Connection, actor_id: UUID, target_id: UUID, permission: str
) -> Act:
    """Take the admins' lock and check the act may happen (see the module's rules)."""
    await lock_admins(connection)
    actor = await select_permissions_of_user(connection, actor_id)
    if actor is None or not actor[0] or permission not in actor[1]:
        raise forbidden(f"This needs the {permission} permission, which you lack.")
    if target_id == actor_id:
        raise APIError(
            409, "OWN_ACCOUNT",
            "Manage your own account from your account's pages and routes (/account, /api/me).",
        )  # fmt: skip
    target = await select_user_by_id(connection, target_id)
    held = await select_permissions_of_user(connection, target_id)
    if target is None or held is None:
        raise user_not_found()
    if not set(held[1]) <= set(actor[1]):
        raise forbidden("This account holds permissions you do not: you may not manage it.")
    grants = await select_grants_of_user(connection, target_id)
    is_admin = any(grant.role == ADMIN_ROLE for grant in grants)
    return Act(actor_id, frozenset(actor[1]), target, is_admin)


async def keep_an_admin(connection: Connection, user: User, *, is_admin: bool) -> None:
    """409 LAST_ADMIN when `user` is the only active admin (after lock_admins)."""
    if is_admin and user.is_active and await count_other_active_admins(connection, user.id) == 0:
        raise last_admin()


async def record_act(
    connection: Connection, act: Act, kind: audit.EventKind | None, action: str, **details: object
) -> None:
    """The act's events: `kind` on the target ("by an administrator", never naming who), and
    `admin_action` on the actor, naming the target."""
    if kind is not None:
        await audit.record(connection, act.target.id, kind, **details, by=BY_ADMINISTRATOR)
    await audit.record(
        connection, act.actor_id, "admin_action", action=action,
        target_id=str(act.target.id), target_email=act.target.email, **details,
    )  # fmt: skip


@dataclass(frozen=True)
class RolesChange:
    user: User
    roles: list[str]  # after the change
    granted: list[str]
    revoked: list[str]


async def set_roles(db: Database, actor_id: UUID, target_id: UUID, roles: list[str]) -> RolesChange:
    """Give the target exactly `roles`; each role granted or taken must hold only permissions
    the actor holds."""
    async with db.transaction() as connection:
        act = await authorize(connection, actor_id, target_id, "roles:write")
        change = await _change_roles(
            connection, act.target, set(roles), granted_by=actor_id,
            allowed=act.actor_permissions,
        )  # fmt: skip
        if change.granted or change.revoked:
            await record_act(
                connection, act, "roles_changed", "set_roles",
                granted=change.granted, revoked=change.revoked,
            )  # fmt: skip
    log.info("user %s set the roles of %s: %s", actor_id, target_id, change.roles)
    return change


async def grant_by_email(db: Database, email: str, role: str) -> RolesChange:
    """The CLI's `roles grant`: an operator, with no account of their own."""
    return await _change_by_email(db, email, add=role)


async def revoke_by_email(db: Database, email: str, role: str) -> RolesChange:
    return await _change_by_email(db, email, remove=role)


async def _change_by_email(
    db: Database, email: str, *, add: str | None = None, remove: str | None = None
) -> RolesChange:
    key = email_key(email)
    async with db.transaction() as connection:
        await lock_admins(connection)
        user = None if key is None else await select_user_by_email_key(connection, key)
        if user is None:
            raise APIError(404, "USER_NOT_FOUND", f"No user has the email {email}.")
        held = {grant.role for grant in await select_grants_of_user(connection, user.id)}
        wanted = (held | {add} if add else held) - ({remove} if remove else set())
        change = await _change_roles(connection, user, wanted, granted_by=None, allowed=None)
        if change.granted or change.revoked:
            await audit.record(
                connection, user.id, "roles_changed",
                granted=change.granted, revoked=change.revoked,
            )  # fmt: skip
    return change


async def _change_roles(
    connection: Connection,
    user: User,
    wanted: set[str],
    *,
    granted_by: UUID | None,
    allowed: frozenset[str] | None,
) -> RolesChange:
    """Grant and take roles so that `user` holds `wanted` (after lock_admins); `allowed`, the
    actor's permissions, bounds what the changed roles may hold (None: the CLI's operator)."""
    grants: list[Grant] = await select_grants_of_user(connection, user.id)
    held = {grant.role for grant in grants}
    granted, revoked = sorted(wanted - held), sorted(held - wanted)
    existing = await select_permissions_of_roles(connection, granted + revoked)
    if unknown := [role for role in granted if role not in existing]:
        raise validation_error("roles", f"There is no role named {unknown[0]}.", "unknown")
    if allowed is not None:
        for role in granted + revoked:
            if not set(existing.get(role, [])) <= allowed:
                raise forbidden(f"The role {role} holds permissions you do not: you may not "
                                "grant it or take it away.")  # fmt: skip
    if ADMIN_ROLE in revoked:
        await keep_an_admin(connection, user, is_admin=True)
    now = clock.utcnow()
    for role in granted:
        await insert_user_role(connection, user.id, role, granted_by, now)
    for role in revoked:
        await delete_user_role(connection, user.id, role)
    return RolesChange(user, sorted(wanted), granted, revoked)


async def roles_of_user(connection: Connection, user_id: UUID) -> list[Grant]:
    return await select_grants_of_user(connection, user_id)
