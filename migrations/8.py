"""Roles and permissions, for administration: a role is a named set of namespaced permissions
(`users:read`), a user holds roles (who granted each, and when), and the built-in `admin` role
holds every permission of authapp's own."""

from typing import Any


async def migrate(connection: Any) -> None:
    await connection.execute(
        """
        CREATE TABLE roles (
            name text PRIMARY KEY
                CONSTRAINT roles_name_shape CHECK (name ~ '^[a-z][a-z0-9_-]{0,39}$'),
            description text NOT NULL DEFAULT ''
                CONSTRAINT roles_description_length CHECK (char_length(description) <= 200),
            -- `resource` and `action`, each lower case (the shape of a token's scope).
            permissions text[] NOT NULL DEFAULT '{}'
                CONSTRAINT roles_permissions_few CHECK (cardinality(permissions) <= 64)
        );

        CREATE TABLE user_roles (
            user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            role text NOT NULL REFERENCES roles (name) ON DELETE CASCADE,
            -- NULL: granted from the CLI, or by an administrator since deleted.
            granted_by uuid REFERENCES users (id) ON DELETE SET NULL,
            granted_at timestamptz NOT NULL,
            PRIMARY KEY (user_id, role)
        );
        -- "Who holds this role": the admin table's filter and the last-admin check.
        CREATE INDEX user_roles_role_idx ON user_roles (role, user_id);
        -- The administrators' table: the newest first, pages cut at (created_at, id).
        CREATE INDEX users_created_at_id_idx ON users (created_at DESC, id DESC);
        """
    )
    # Bound, not written in the SQL: quart-db would read `:read` in a literal as a parameter.
    await connection.execute(
        "INSERT INTO roles (name, description, permissions) VALUES (:name, :description, :perms)",
        {
            "name": "admin",
            "description": "Every permission of authapp: users, roles and the security log.",
            "perms": ["users:read", "users:write", "roles:write", "audit:read"],
        },
    )


async def valid_migration(connection: Any) -> bool:
    tables = await connection.fetch_val(
        """SELECT count(*) FROM information_schema.tables
            WHERE table_schema = current_schema() AND table_name IN ('roles', 'user_roles')"""
    )
    return bool(tables == 2)
