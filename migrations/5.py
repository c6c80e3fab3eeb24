"""Addresses matched by a key computed in Python (authapp.emails.email_key), not by the
database's locale; and a security stamp that changes whenever the credentials do.

The unique index on lower(email) let PostgreSQL's locale decide which spellings are one
account: under a UTF-8 locale it folds `İ` to `i`, so `jİm@` held `jim@`. Every row gets its
key here; if two existing accounts share one, the migration stops and names them (nothing is
changed), since merging accounts is for people to decide.
"""

from typing import Any

from authapp.accounts.emails import email_key

BATCH = 10_000  # rows per UPDATE: one round trip each, not one per user


class EmailKeyCollision(Exception):
    """Existing accounts whose addresses are one account under the new key."""


async def migrate(connection: Any) -> None:
    await connection.execute(
        """
        ALTER TABLE users
            ADD COLUMN email_key text,
            ADD COLUMN security_stamp uuid NOT NULL DEFAULT gen_random_uuid();
        """
    )
    rows = await connection.fetch_all("SELECT id, email FROM users ORDER BY created_at, id")
    keys: dict[str, list[tuple[str, str]]] = {}
    for row in rows:
        # A stored address is one the app once accepted; if the validator of today refuses
        # it, its trimmed text still keys it, so no account loses its sign-in.
        key = email_key(row["email"]) or row["email"].strip()
        keys.setdefault(key, []).append((str(row["id"]), row["email"]))
    collisions = {key: users for key, users in keys.items() if len(users) > 1}
    if collisions:
        report = "; ".join(
            f"{key!r}: " + ", ".join(f"{user_id} <{email}>" for user_id, email in users)
            for key, users in sorted(collisions.items())
        )
        raise EmailKeyCollision(
            f"{len(collisions)} address key(s) are held by more than one account, so migration "
            f"5 cannot make them unique; merge or change these accounts, then start again: "
            f"{report}"
        )
    pairs = [(user_id, key) for key, ((user_id, _),) in keys.items()]
    for start in range(0, len(pairs), BATCH):
        batch = pairs[start : start + BATCH]
        await connection.execute(
            """UPDATE users SET email_key = keyed.key
                 FROM unnest(CAST(:ids AS uuid[]), CAST(:keys AS text[])) AS keyed(id, key)
                WHERE users.id = keyed.id""",
            {"ids": [user_id for user_id, _ in batch], "keys": [key for _, key in batch]},
        )
    await connection.execute(
        """
        ALTER TABLE users
            ALTER COLUMN email_key SET NOT NULL,
            ADD CONSTRAINT users_email_key_shape CHECK (
                char_length(email_key) BETWEEN 3 AND 320 AND position('@' IN email_key) > 1
            );
        CREATE UNIQUE INDEX users_email_key_key ON users (email_key);
        DROP INDEX users_email_lower_key;
        """
    )


async def valid_migration(connection: Any) -> bool:
    indexes = await connection.fetch_val(
        """SELECT count(*) FROM pg_indexes
            WHERE schemaname = current_schema() AND tablename = 'users'
              AND indexname = 'users_email_key_key'"""
    )
    return bool(indexes == 1)
