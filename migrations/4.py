"""Account lockout (failed sign-ins counted on the user) and the security events of each user."""

from typing import Any


async def migrate(connection: Any) -> None:
    await connection.execute(
        """
        ALTER TABLE users
            ADD COLUMN failed_logins integer NOT NULL DEFAULT 0
                CONSTRAINT users_failed_logins_not_negative CHECK (failed_logins >= 0),
            ADD COLUMN locked_until timestamptz;

        CREATE TABLE security_events (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            -- Insertion order: ties of created_at (one transaction, one clock tick) keep it.
            seq bigint GENERATED ALWAYS AS IDENTITY,
            user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            kind text NOT NULL
                CONSTRAINT security_events_kind_shape CHECK (kind ~ '^[a-z_]{1,40}$'),
            created_at timestamptz NOT NULL,
            ip inet,
            user_agent text
                CONSTRAINT security_events_user_agent_length CHECK (char_length(user_agent) <= 512),
            details jsonb NOT NULL DEFAULT '{}'
                CONSTRAINT security_events_details_object CHECK (jsonb_typeof(details) = 'object')
        );

        -- A user's page, newest first; and the retention sweep over everyone's old rows.
        CREATE INDEX security_events_user_idx
            ON security_events (user_id, created_at DESC, seq DESC);
        CREATE INDEX security_events_created_at_idx ON security_events (created_at);
        """
    )


async def valid_migration(connection: Any) -> bool:
    tables = await connection.fetch_val(
        """SELECT count(*) FROM information_schema.tables
            WHERE table_schema = current_schema() AND table_name = 'security_events'"""
    )
    return bool(tables == 1)
