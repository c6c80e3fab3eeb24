"""Notes: a small product built on authapp as a library.

It adds a JSON resource (/api/notes, guarded by tokens' own scopes `notes:read` and
`notes:write`), a page (/notes, in authapp's layout), a table of its own (its migrations run
after authapp's, numbered on their own), and a receiver of authapp's `registered` signal that
writes every new user a welcome note. authapp's own routes, pages, CLI and settings all stay.

    hypercorn 'notes_app:create_app()'           # or: authapp --app notes_app:create_app serve
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from quart import Quart

import authapp

from . import api, pages, receivers

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def create_app(config: Mapping[str, Any] | None = None) -> Quart:
    """authapp's app, with the notes and their migrations."""
    app = authapp.create_app({"EXTRA_MIGRATIONS": str(MIGRATIONS), **(config or {})})
    for scope, description in api.SCOPES.items():
        authapp.register_scope(app, scope, description)
    app.register_blueprint(api.bp)
    app.register_blueprint(pages.bp)
    receivers.connect()
    return app
