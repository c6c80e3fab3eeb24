"""SQL for the roles and user_roles tables: named sets of permissions, and who holds which."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from quart_db import Connection

ADMIN_ROLE = "admin"

# The permissions of the user `u` through their roles, sorted: resolved with the session or
# token in the same statement (no extra round trip), so a role taken away counts at once.
PERMISSIONS = """ARRAY(SELECT DISTINCT p
                         FROM user_roles ur
                         JOIN roles r ON r.name = ur.role, unnest(r.permissions) AS p
                        WHERE ur.user_id = u.id
                     ORDER BY p)"""


@dataclass(frozen=True)
class Role:
    name: str
    description: str
    permissions: list[str]
    holders: int  # users who hold it, active or not


@dataclass(frozen=True)
class Grant:
    """A role a user holds."""

    role: str
    granted_by: UUID | None  # None: from the CLI, or by an administrator since deleted
    granted_at: datetime


async def select_roles(db: Connection) -> list[Role]:
    rows = await db.fetch_all(
        """SELECT r.name, r.description, r.permissions,
                  (SELECT count(*) FROM user_roles ur WHERE ur.role = r.name) AS holders
             FROM roles r ORDER BY r.name"""
    )
    return [Role(**row) for row in rows]


async def insert_role(
    db: Connection, name: str, description: str, permissions: list[str]
) -> Role | None:
    """Add a role; None when one of that name exists."""
    row = await db.fetch_first(
        """INSERT INTO roles (name, description, permissions)
                VALUES (:name, :description, :permissions)
           ON CONFLICT (name) DO NOTHING
             RETURNING name, description, permissions, 0 AS holders""",
        {"name": name, "description": description, "permissions": permissions},
    )
    return None if row is None else Role(**row)


async def select_grants_of_user(db: Connection, user_id: UUID) -> list[Grant]:
    rows = await db.fetch_all(
        """SELECT role, granted_by, granted_at FROM user_roles
            WHERE user_id = :user_id ORDER BY role""",
        {"user_id": user_id},
    )
    return [Grant(**row) for row in rows]


async def select_permissions_of_roles(db: Connection, roles: list[str]) -> dict[str, list[str]]:
    """Each named role that exists, with its permissions."""
    rows = await db.fetch_all(
        "SELECT name, permissions FROM roles WHERE name = ANY(CAST(:roles AS text[]))",
        {"roles": roles},
    )
    return {row["name"]: list(row["permissions"]) for row in rows}


async def select_permissions_of_user(
    db: Connection, user_id: UUID
) -> tuple[bool, list[str]] | None:
    """Whether the user is active, and what their roles let them do; None for no user."""
    row = await db.fetch_first(
        f"SELECT u.is_active, {PERMISSIONS} AS permissions FROM users u WHERE u.id = :user_id",  # noqa: S608
        {"user_id": user_id},
    )
    return None if row is None else (bool(row["is_active"]), list(row["permissions"]))


async def insert_user_role(
    db: Connection, user_id: UUID, role: str, granted_by: UUID | None, now: datetime
) -> bool:
    """Grant a role; False when the user holds it already or it does not exist (found in the
    statement, so no foreign-key error ends the caller's transaction)."""
    granted = await db.fetch_val(
        """INSERT INTO user_roles (user_id, role, granted_by, granted_at)
                SELECT :user_id, r.name, :granted_by, :now FROM roles r WHERE r.name = :role
           ON CONFLICT DO NOTHING RETURNING true""",
        {"user_id": user_id, "role": role, "granted_by": granted_by, "now": now},
    )
    return bool(granted)


async def delete_user_role(db: Connection, user_id: UUID, role: str) -> bool:
    revoked = await db.fetch_val(
        "DELETE FROM user_roles WHERE user_id = :user_id AND role = :role RETURNING true",
        {"user_id": user_id, "role": role},
    )
    return bool(revoked)


async def lock_admins(db: Connection) -> None:
    """Hold the admin role's row until the transaction ends: every change that could leave no
    active admin (a demotion, a deactivation, a deletion) takes it first, so two of them in
    parallel run one after the other, and the second counts what the first left."""
    await db.execute("SELECT 1 FROM roles WHERE name = :admin FOR UPDATE", {"admin": ADMIN_ROLE})


async def count_other_active_admins(db: Connection, user_id: UUID) -> int:
    """Active users besides `user_id` holding the admin role (read after lock_admins)."""
    count = await db.fetch_val(
        """SELECT count(*) FROM user_roles ur JOIN users u ON u.id = ur.user_id
            WHERE ur.role = :admin AND u.is_active AND u.id <> :user_id""",
        {"admin": ADMIN_ROLE, "user_id": user_id},
    )
    return int(count or 0)
