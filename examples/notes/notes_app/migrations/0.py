"""The notes table: a user's notes, gone with the user."""

from typing import Any


async def migrate(connection: Any) -> None:
    await connection.execute(
        """
        CREATE TABLE notes (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            -- authapp's users table is the product's to refer to; its rows are authapp's.
            user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            title text NOT NULL
                CONSTRAINT notes_title_shape CHECK (char_length(title) BETWEEN 1 AND 200),
            body text NOT NULL DEFAULT ''
                CONSTRAINT notes_body_length CHECK (char_length(body) <= 10000),
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX notes_user_idx ON notes (user_id, created_at DESC);
        """
    )
