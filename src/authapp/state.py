"""The app's own state: the settings, the database and the hashing pool of one app."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from quart import current_app

from .config import Settings
from .database import Database
from .passwords import PasswordHashing

if TYPE_CHECKING:  # sessions needs state at import time
    from .sessions import SessionLookups
    from .tokens import TokenLookups


@dataclass
class AppState:
    settings: Settings
    db: Database
    hashing: PasswordHashing
    sessions: SessionLookups
    tokens: TokenLookups


def state() -> AppState:
    return cast(AppState, current_app.extensions["authapp"])
