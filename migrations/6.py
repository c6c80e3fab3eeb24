"""Scopes a product registers (authapp.register_scope) may be given to tokens: the list of
authapp's own scopes in a CHECK becomes a check of a scope's shape. Which scopes exist is the
app's table (accounts/tokens.py), checked when a token is made."""

from typing import Any

# accounts/tokens.py's SCOPE_SHAPE; a CHECK cannot look into each element, so the scopes are
# joined with spaces and the whole matched.
SCOPE = "[a-z][a-z0-9_]{0,30}:[a-z][a-z0-9_]{0,30}"


async def migrate(connection: Any) -> None:
    # No values are bound here, so the ':' in the pattern is safe from named parameters.
    await connection.execute(
        f"""
        ALTER TABLE api_tokens
            DROP CONSTRAINT api_tokens_scopes_known,
            ADD CONSTRAINT api_tokens_scopes_shape CHECK (
                cardinality(scopes) BETWEEN 1 AND 64
                AND array_to_string(scopes, ' ') ~ '^{SCOPE}( {SCOPE})*$'
            );
        """
    )


async def valid_migration(connection: Any) -> bool:
    found = await connection.fetch_val(
        """SELECT count(*) FROM pg_constraint
            WHERE conname = 'api_tokens_scopes_shape'"""
    )
    return bool(found == 1)
