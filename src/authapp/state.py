"""The app's assembled services (assembly, beside create_app): the settings, the database, the
hashing pool, the encryption of secrets at rest, the session and token lookups and the scopes
of one app, for the HTTP edge."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

from quart import current_app

from .accounts.sessions import SessionLookups
from .accounts.tokens import Scopes, TokenLookups
from .config import Settings
from .infra.database import Database
from .infra.encryption import Encryption
from .infra.hashing import PasswordHashing


@dataclass
class AppState:
    settings: Settings
    db: Database
    hashing: PasswordHashing
    sessions: SessionLookups
    tokens: TokenLookups
    encryption: Encryption  # AUTHAPP_ENCRYPTION_KEYS: the first encrypts, every one decrypts
    scopes: Scopes = field(default_factory=Scopes)  # authapp's, and a product's (register_scope)


def state() -> AppState:
    return cast(AppState, current_app.extensions["authapp"])
