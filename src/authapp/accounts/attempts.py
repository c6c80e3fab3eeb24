"""Credential checks of the request being served: whether it checked a password (or, later, a
code) and whether that proved right, so budgets that count only failures can give back what an
honest success spent.

The rate limiter starts a record before the view runs; the account rules mark it where they
check a password. Outside a request (the CLI) there is no record and marking does nothing.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass
class CheckRecord:
    checked: bool = False
    proved: bool = False

    @property
    def failed(self) -> bool:
        """A check ran and did not end in proof (a wrong password, a lock, an error midway)."""
        return self.checked and not self.proved


_current: ContextVar[CheckRecord | None] = ContextVar("authapp_credential_checks", default=None)


def start_record() -> CheckRecord:
    record = CheckRecord()
    _current.set(record)
    return record


def checking() -> None:
    """A credential is about to be checked: until it proves right, this request failed."""
    record = _current.get()
    if record is not None:
        record.checked = True


def proved() -> None:
    """The credential proved right."""
    record = _current.get()
    if record is not None:
        record.proved = True
