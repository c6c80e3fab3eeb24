"""The app's own state: the settings, the database and the hashing pool of one app."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from quart import current_app

from .config import Settings
from .database import Database
from .passwords import PasswordHashing


@dataclass
class AppState:
    settings: Settings
    db: Database
    hashing: PasswordHashing


def state() -> AppState:
    return cast(AppState, current_app.extensions["authapp"])
