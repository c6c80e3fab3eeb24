"""Users and their revocable sessions."""

from typing import Any


async def migrate(connection: Any) -> None:
    await connection.execute(
        """
        CREATE TABLE users (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            email text NOT NULL
                CONSTRAINT users_email_shape CHECK (
                    char_length(email) BETWEEN 3 AND 254
                    AND email = btrim(email)
                    AND position('@' IN email) > 1
                ),
            password_hash text NOT NULL
                CONSTRAINT users_password_hash_argon2 CHECK (password_hash LIKE '$argon2%'),
            display_name text NOT NULL
                CONSTRAINT users_display_name_shape CHECK (
                    char_length(display_name) BETWEEN 1 AND 100
                    AND display_name = btrim(display_name)
                ),
            is_active boolean NOT NULL DEFAULT true,
            email_verified_at timestamptz,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            last_login_at timestamptz,
            CONSTRAINT users_updated_after_created CHECK (updated_at >= created_at)
        );

        CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));

        CREATE TABLE sessions (
            id bytea PRIMARY KEY
                CONSTRAINT sessions_id_is_sha256 CHECK (octet_length(id) = 32),
            user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            created_at timestamptz NOT NULL DEFAULT now(),
            last_seen_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz NOT NULL,
            revoked_at timestamptz,
            remember boolean NOT NULL DEFAULT false,
            ip inet,
            user_agent text
                CONSTRAINT sessions_user_agent_length CHECK (char_length(user_agent) <= 512),
            CONSTRAINT sessions_expires_after_created CHECK (expires_at > created_at),
            CONSTRAINT sessions_seen_after_created CHECK (last_seen_at >= created_at),
            CONSTRAINT sessions_revoked_after_created CHECK (
                revoked_at IS NULL OR revoked_at >= created_at
            )
        );

        CREATE INDEX sessions_user_id_idx ON sessions (user_id);
        """
    )


async def valid_migration(connection: Any) -> bool:
    tables = await connection.fetch_val(
        """SELECT count(*) FROM information_schema.tables
            WHERE table_schema = current_schema() AND table_name IN ('users', 'sessions')"""
    )
    return bool(tables == 2)
