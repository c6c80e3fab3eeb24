"""The app's own state: the settings, the database and the hashing pool of one app."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from quart import current_app

from .config import Settings
from .infra.database import Database
from .infra.hashing import PasswordHashing

if TYPE_CHECKING:  # sessions needs state at import time
    from .accounts.sessions import SessionLookups
    from .accounts.tokens import TokenLookups


@dataclass
class AppState:
    settings: Settings
    db: Database
    hashing: PasswordHashing
    sessions: SessionLookups
    tokens: TokenLookups


def state() -> AppState:
    return cast(AppState, current_app.extensions["authapp"])
