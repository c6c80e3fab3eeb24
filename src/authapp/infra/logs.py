"""Logs: one line format (readable text, or one JSON object a line), the request id on every
line written while serving a request, and no secrets.

`configure_logging` gives the process one handler, on the root logger, unless the host
program set up logging itself. hypercorn.toml hands Hypercorn's own loggers (its error log
and its access log) to that handler too, so every line has the same shape. Secrets are kept
out twice: the access log's atoms are redacted before the line is made (a filter on the
`hypercorn.access` logger, which works whatever handler prints it), and every line our
handler prints is redacted again (a path with a mailed token can reach an error message).

One exception, for a developer: the outbox's mailed links (`log_for_dev_console`) reach every
handler redacted, but the console of development (authapp's own handler, text lines) prints
them whole, so `make run` shows a link to click. The whole text is never on the record.

Loggers are named by what they log about (`authapp.mail`, `authapp.database`,
`authapp.accounts`, ...), not by module path: those names are what operators filter on, so they
stayed when the modules moved into rooms.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import MutableMapping
from datetime import UTC, datetime
from typing import Any
from weakref import WeakKeyDictionary

from ..config import Settings
from .context import current_request

ACCESS_LOGGER = "hypercorn.access"
REDACTED = "[redacted]"
# Mailed links carry their token in the path (the pages); "resend" is a page, not a token.
_LINK_TOKEN_RE = re.compile(
    r"(/auth/(?:verify-email|reset-password|confirm-email)/)(?!resend(?:[/?#\s\"']|$))[^/?#\s\"']+"
)
_API_TOKEN_RE = re.compile(r"authapp_pat_[A-Za-z0-9_-]+")
_BEARER_RE = re.compile(r"(?i)(bearer\s+)[^\s\"',]+")
# Access-log atoms that are credentials whole (if an operator ever puts them in the format).
_SECRET_ATOMS = {"{authorization}i", "{proxy-authorization}i", "{cookie}i", "{set-cookie}o"}
# The whole text of records that only the development console prints whole, kept off the
# record itself, so no other handler, formatter or copy of the record can see it.
_WHOLE_TEXT: WeakKeyDictionary[logging.LogRecord, str] = WeakKeyDictionary()
# The attributes every LogRecord has; anything else on a record is an extra field.
_RECORD_ATTRIBUTES = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "request_id",
}


def redact(text: str) -> str:
    """The text without the tokens of mailed links, API tokens and bearer credentials."""
    text = _LINK_TOKEN_RE.sub(rf"\g<1>{REDACTED}", text)
    text = _API_TOKEN_RE.sub(f"authapp_pat_{REDACTED}", text)
    return _BEARER_RE.sub(rf"\g<1>{REDACTED}", text)


def log_for_dev_console(logger: logging.Logger, level: int, text: str) -> None:
    """Log `text` redacted, as every line is, except on the console of development (authapp's
    handler printing text), which prints it whole: a mailed link a developer clicks."""
    if not logger.isEnabledFor(level):
        return
    path, line, function, _ = logger.findCaller(stacklevel=2)
    record = logger.makeRecord(logger.name, level, path, line, redact(text), (), None, function)
    _WHOLE_TEXT[record] = text
    logger.handle(record)


class RequestIdFilter(logging.Filter):
    """Puts the id of the request being served (or None) on each record as `request_id`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            request = current_request()
            record.request_id = request.request_id if request else None
        return True


class AccessLogFilter(logging.Filter):
    """Redacts Hypercorn's access-log atoms before they make a line, and gives the line the
    request's id (from the X-Request-ID answer header) and a few fields for JSON."""

    def filter(self, record: logging.LogRecord) -> bool:
        atoms = record.args
        if not isinstance(atoms, MutableMapping):
            return True
        for key, value in list(atoms.items()):
            if key in _SECRET_ATOMS:
                atoms[key] = REDACTED
            elif isinstance(value, str):
                atoms[key] = redact(value)
        request_id = atoms["{x-request-id}o"]
        record.request_id = None if request_id == "-" else request_id
        record.http = {
            "client": atoms["h"],
            "method": atoms["m"],
            "path": atoms["U"],
            "status": int(atoms["s"]) if str(atoms["s"]).isdigit() else None,
            "duration_ms": round(int(atoms["D"]) / 1000, 3),
        }
        return True


class TextFormatter(logging.Formatter):
    """`[time] [pid] [LEVEL] logger: message [request id]`, for people; `dev_console` prints the
    lines of `log_for_dev_console` whole (only configure_logging sets it, in development)."""

    def __init__(self, dev_console: bool = False) -> None:
        super().__init__("[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s")
        self.dev_console = dev_console

    def format(self, record: logging.LogRecord) -> str:
        whole = _WHOLE_TEXT.get(record) if self.dev_console else None
        if whole is None:
            line = redact(super().format(record))
        else:  # a copy with the whole text; such a line has no traceback to redact
            fields = {**vars(record), "msg": whole, "exc_info": None, "exc_text": None}
            line = super().format(logging.makeLogRecord(fields))
        request_id = getattr(record, "request_id", None)
        if request_id is None:
            return line
        first, newline, rest = line.partition("\n")  # after the message, before a traceback
        return f"{first} [{request_id}]{newline}{rest}"


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, request_id, then extra fields
    (and `exception` with the traceback), for log collectors."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "request_id": getattr(record, "request_id", None),
            "process": record.process,
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exception"] = redact(record.exc_text)
        return json.dumps(entry, default=str)


def printed_elsewhere(record: logging.LogRecord) -> bool:
    """Whether Hypercorn prints this line itself: run without hypercorn.toml, its loggers keep
    their own handlers (and its error log still propagates here)."""
    return record.name.startswith("hypercorn.") and bool(logging.getLogger(record.name).handlers)


def console_formatter(settings: Settings) -> logging.Formatter:
    """The format of authapp's handler: mailed links whole only in development's text lines."""
    if settings.log_style == "text":
        return TextFormatter(dev_console=settings.env == "development")
    return JsonFormatter()


class AuthappLogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The one handler authapp installs: standard error, request ids, redaction."""

    def __init__(self, formatter: logging.Formatter) -> None:
        super().__init__()
        self.addFilter(lambda record: not printed_elsewhere(record))
        self.addFilter(RequestIdFilter())
        self.setFormatter(formatter)


def configure_logging(settings: Settings) -> None:
    """Our level, our handler on the root logger (unless the host program has its own), and
    the access log's redaction."""
    logging.getLogger("authapp").setLevel(settings.log_level.upper())
    root = logging.getLogger()
    ours = [handler for handler in root.handlers if isinstance(handler, AuthappLogHandler)]
    if ours:
        for handler in ours:  # a later app of the same process (tests) picks the format
            handler.setFormatter(console_formatter(settings))
    elif not root.handlers:
        root.addHandler(AuthappLogHandler(console_formatter(settings)))
        logging.captureWarnings(True)  # Python's warnings too, in the same format
    access = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(existing, AccessLogFilter) for existing in access.filters):
        access.addFilter(AccessLogFilter())
