"""Scopes a product registers on its app (authapp.register_scope) may be given to tokens: the
list of authapp's own scopes in a CHECK becomes a check of each scope's shape. Which scopes
exist is each app's table (accounts/tokens.py), checked when a token is made."""

from typing import Any

# accounts/tokens.py's SCOPE_SHAPE.
SCOPE = "^[a-z][a-z0-9_]{0,30}:[a-z][a-z0-9_]{0,30}$"

# The function first: a CHECK cannot hold a subquery, but it may call one.
WELL_FORMED = (
    "CREATE FUNCTION authapp_scopes_well_formed(scopes text[]) RETURNS boolean "  # noqa: S608
    "LANGUAGE sql IMMUTABLE STRICT AS $$ "
    f"SELECT coalesce(bool_and(scope ~ '{SCOPE}'), false) FROM unnest(scopes) scope $$"
)


async def migrate(connection: Any) -> None:
    # No values are bound here, so the ':' in the pattern is safe from named parameters.
    await connection.execute(WELL_FORMED)
    await connection.execute(
        """
        ALTER TABLE api_tokens
            DROP CONSTRAINT api_tokens_scopes_known,
            ADD CONSTRAINT api_tokens_scopes_shape CHECK (
                cardinality(scopes) BETWEEN 1 AND 64 AND authapp_scopes_well_formed(scopes)
            );
        """
    )


async def valid_migration(connection: Any) -> bool:
    found = await connection.fetch_val(
        "SELECT count(*) FROM pg_constraint WHERE conname = 'api_tokens_scopes_shape'"
    )
    return bool(found == 1)
