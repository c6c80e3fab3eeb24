"""What the notes do when something happens to an account: authapp's signals."""

from __future__ import annotations

from typing import Any

from authapp import database, signals
from authapp.signals import AccountEvent

from . import store

WELCOME = "Welcome to Notes"


async def welcome(sender: Any, event: AccountEvent) -> None:
    """Every new account starts with a note (sent after the account is committed, so the
    foreign key finds the user)."""
    async with database().connection() as connection:
        await store.insert_note(
            connection, event.user_id, WELCOME, "Write your first note at /notes."
        )


def connect() -> None:
    """Subscribe, once per process (blinker keeps one receiver per function)."""
    signals.registered.connect(welcome)
