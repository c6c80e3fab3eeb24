"""The one error type of authapp, for every layer: `APIError(status, code, message)` with a
stable code and a human message, and the details that name a field. web/errors.py turns it
into an answer."""

from __future__ import annotations

from pydantic import BaseModel


class ErrorDetail(BaseModel):
    field: str
    message: str
    type: str


class APIError(Exception):
    """An error with an HTTP status, a stable code and a human message."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[ErrorDetail] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}


def validation_error(field: str, message: str, type_: str) -> APIError:
    """A 400 VALIDATION_ERROR naming one field, as schema validation would."""
    detail = ErrorDetail(field=field, message=message, type=type_)
    return APIError(400, "VALIDATION_ERROR", "The request is not valid.", [detail])


def wait_text(seconds: int) -> str:
    """A wait for people: "45 seconds", "15 minutes", "3 hours", rounded up."""
    count, unit = seconds, "second"
    if seconds > 2 * 3600:
        count, unit = -(-seconds // 3600), "hour"
    elif seconds >= 60:
        count, unit = -(-seconds // 60), "minute"
    return f"{count} {unit}{'s' if count != 1 else ''}"
