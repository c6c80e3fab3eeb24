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

import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from http import HTTPStatus
from logging.handlers import QueueHandler
from queue import SimpleQueue
from time import strftime
from typing import Any
from weakref import WeakKeyDictionary

import orjson
from hypercorn.logging import Logger as HypercornLogger
from hypercorn.typing import ResponseSummary, WWWScope

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
# Access-log atoms that cannot hold a secret: shown as they are, without a redaction pass.
_SAFE_ATOMS = {"h", "l", "t", "s", "st", "S", "m", "H", "b", "B", "T", "D", "L", "p"}
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
    # Each pattern needs its literal part in the text: most lines (an access log line of
    # /api/me, say) hold none, and three `in` tests cost less than one regex pass.
    if "/auth/" in text:
        text = _LINK_TOKEN_RE.sub(rf"\g<1>{REDACTED}", text)
    if "authapp_pat_" in text:
        text = _API_TOKEN_RE.sub(f"authapp_pat_{REDACTED}", text)
    if "bearer" in text.lower():
        text = _BEARER_RE.sub(rf"\g<1>{REDACTED}", text)
    return text


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


class AccessAtoms(Mapping[str, Any]):
    """Hypercorn's access-log atoms (hypercorn.logging.AccessLogAtoms), each made only when
    the line's format asks for it: a line uses five or six of the fifty-odd that Hypercorn
    makes for every request (one per header and one per environment variable). The
    environment is never logged: its atoms (`{name}e`) are all `-`, as it holds the secret
    key and the database's password."""

    __slots__ = ("_request", "_response", "_time")

    def __init__(
        self, request: WWWScope, response: ResponseSummary | None, request_time: float
    ) -> None:
        self._request = request
        self._response = response
        self._time = request_time

    def __getitem__(self, key: str) -> Any:
        atom = _ATOMS.get(key)
        if atom is not None:
            return atom(self._request, self._response, self._time)
        if key.startswith("{") and len(key) > 3:
            name, kind = key[1:-2].lower().encode("latin-1"), key[-1]
            if kind == "i":
                return _header(self._request["headers"], name)
            if kind == "o" and self._response is not None:
                return _header(self._response.get("headers", ()), name)
        return "-"

    def __iter__(self) -> Iterator[str]:
        return iter(_ATOMS)

    def __len__(self) -> int:
        return len(_ATOMS)


def _header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str:
    found = "-"
    for key, value in headers:  # the last of repeated headers, as Hypercorn's atoms
        if key.lower() == name:
            found = value.decode("latin-1")
    return found


def _client(request: WWWScope) -> str | None:
    client = request.get("client")
    if client is None:
        return None
    if len(client) == 2:
        return f"{client[0]}:{client[1]}"
    return str(client[0]) if len(client) == 1 else f"<???{client}???>"


def _method(request: WWWScope) -> str:
    return request["method"] if request["type"] == "http" else "GET"


def _path_with_query(request: WWWScope) -> str:
    query = request["query_string"].decode()
    return request["path"] + ("?" + query if query else "")


def _status_phrase(response: ResponseSummary | None) -> str:
    if response is None:
        return "-"
    try:
        return HTTPStatus(response["status"]).phrase
    except ValueError:
        return f"<???{response['status']}???>"


_Atom = Callable[[Any, Any, float], Any]
_ATOMS: dict[str, _Atom] = {
    "h": lambda request, response, time: _client(request),
    "l": lambda request, response, time: "-",
    "t": lambda request, response, time: strftime("[%d/%b/%Y:%H:%M:%S %z]"),
    "r": lambda request, response, time: (
        f"{_method(request)} {request['path']} {request.get('http_version', 'ws')}"
    ),
    "R": lambda request, response, time: (
        f"{_method(request)} {_path_with_query(request)} {request.get('http_version', 'ws')}"
    ),
    "s": lambda request, response, time: "-" if response is None else str(response["status"]),
    "st": lambda request, response, time: _status_phrase(response),
    "S": lambda request, response, time: request["scheme"],
    "m": lambda request, response, time: _method(request),
    "U": lambda request, response, time: request["path"],
    "Uq": lambda request, response, time: _path_with_query(request),
    "q": lambda request, response, time: request["query_string"].decode(),
    "H": lambda request, response, time: request.get("http_version", "ws"),
    "b": lambda request, response, time: (
        "-" if response is None else _header(response.get("headers", ()), b"content-length")
    ),
    "f": lambda request, response, time: _header(request["headers"], b"referer"),
    "a": lambda request, response, time: _header(request["headers"], b"user-agent"),
    "T": lambda request, response, time: int(time),
    "D": lambda request, response, time: int(time * 1_000_000),
    "L": lambda request, response, time: f"{time:.6f}",
    "p": lambda request, response, time: f"<{os.getpid()}>",
}
_ATOMS["B"] = _ATOMS["b"]


class AccessLogger(HypercornLogger):
    """Hypercorn's logger, its access log made of AccessAtoms, and only when it will be
    printed. `authapp serve` uses it; plain Hypercorn keeps its own (and AccessLogFilter
    redacts either)."""

    async def access(
        self, request: WWWScope, response: ResponseSummary, request_time: float
    ) -> None:
        if self.access_logger is not None and self.access_logger.isEnabledFor(logging.INFO):
            self.access_logger.info(
                self.access_log_format, self.atoms(request, response, request_time)
            )

    def atoms(
        self, request: WWWScope, response: ResponseSummary | None, request_time: float
    ) -> Mapping[str, Any]:
        return AccessAtoms(request, response, request_time)


class RedactedAtoms(Mapping[str, Any]):
    """Access-log atoms as a line may show them: redacted as the line's format asks for each
    (a format uses a few), credentials whole never, values that cannot hold a secret (the
    status, the time, the client's address) as they are."""

    __slots__ = ("_atoms",)

    def __init__(self, atoms: Mapping[str, Any]) -> None:
        self._atoms = atoms

    def __getitem__(self, key: str) -> Any:
        if key in _SAFE_ATOMS:
            return self._atoms[key]
        if key.startswith("{") and (key.lower() in _SECRET_ATOMS or key.endswith("}e")):
            return REDACTED if key.lower() in _SECRET_ATOMS else "-"
        value = self._atoms[key]
        return redact(value) if isinstance(value, str) else value

    def __iter__(self) -> Iterator[str]:
        return iter(self._atoms)

    def __len__(self) -> int:
        return len(self._atoms)


class AccessLogFilter(logging.Filter):
    """Redacts Hypercorn's access-log atoms before they make a line (whichever logger made
    them), and gives the line the request's id (from the X-Request-ID answer header) and a
    few fields for JSON."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not isinstance(record.args, Mapping) or isinstance(record.args, RedactedAtoms):
            return True
        atoms: Mapping[str, Any] = record.args
        request_id = atoms["{x-request-id}o"]
        status = atoms["s"]
        record.args = RedactedAtoms(atoms)
        record.request_id = None if request_id == "-" else request_id
        record.http = {
            "client": atoms["h"],
            "method": atoms["m"],
            "path": redact(atoms["U"]),
            "status": int(status) if str(status).isdigit() else None,
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
        # orjson: a tenth of json.dumps's CPU; dates as str() would write them, as before.
        return orjson.dumps(entry, default=str, option=orjson.OPT_PASSTHROUGH_DATETIME).decode()


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


class OffTheLoopHandler(QueueHandler):
    """Hands each record to the thread that writes the lines (write_off_the_loop), once it
    has the request's id and its message (its arguments may change once the call returns)."""

    def __init__(self, target: AuthappLogHandler) -> None:
        self.queue: SimpleQueue[logging.LogRecord] = SimpleQueue()
        super().__init__(self.queue)
        self.target = target
        self.addFilter(lambda record: not printed_elsewhere(record))
        self.addFilter(RequestIdFilter())  # here: the request's context is this thread's

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # The record itself (not a copy, as Python 3.12's does): the development console
        # knows its own records (_WHOLE_TEXT), and the formatters want its exception.
        record.msg = record.getMessage()
        record.args = None
        return record


def configure_logging(settings: Settings) -> None:
    """Our level, our handler on the root logger (unless the host program has its own), and
    the access log's redaction."""
    logging.getLogger("authapp").setLevel(settings.log_level.upper())
    root = logging.getLogger()
    ours = [handler for handler in root.handlers if isinstance(handler, AuthappLogHandler)]
    ours += [handler.target for handler in root.handlers if isinstance(handler, OffTheLoopHandler)]
    if ours:
        for handler in ours:  # a later app of the same process (tests) picks the format
            handler.setFormatter(console_formatter(settings))
    elif not root.handlers:
        root.addHandler(AuthappLogHandler(console_formatter(settings)))
        logging.captureWarnings(True)  # Python's warnings too, in the same format
    access = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(existing, AccessLogFilter) for existing in access.filters):
        access.addFilter(AccessLogFilter())
