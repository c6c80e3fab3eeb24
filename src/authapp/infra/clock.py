"""The one clock: services read the time here, so a test can move it for all of them at once."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)
