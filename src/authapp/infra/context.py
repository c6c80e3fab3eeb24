"""The request being served, for logs and security events: its id and its client.

The HTTP edge's one middleware enters it at the start of every HTTP request, around the whole
app, so every log line of the request (error handlers and background tasks it starts included, as
asyncio tasks copy context variables) carries the request id, and services can record where
a change came from without knowing about requests.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass

REQUEST_ID_HEADER = "X-Request-ID"
# What we take from a client or proxy: short, and nothing that could break a log line.
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
MAX_USER_AGENT = 512


@dataclass(frozen=True)
class RequestContext:
    request_id: str
    remote_addr: str | None  # the peer, after the proxy fix when AUTHAPP_TRUSTED_PROXY_HOPS
    user_agent: str | None


_current: ContextVar[RequestContext | None] = ContextVar("authapp_request", default=None)


def current_request() -> RequestContext | None:
    """The request being served, or None outside one (the CLI, start-up)."""
    return _current.get()


def request_id_from(header: str | None) -> str:
    """The incoming id when it is well-formed, else a new one."""
    if header is not None and _REQUEST_ID_RE.match(header):
        return header
    # 128 random bits, as a uuid4's hex, without its system call per request (2% of /healthz):
    # an id tells lines apart and guards nothing, so it needs no cryptographic randomness.
    return f"{random.getrandbits(128):032x}"


def request_context(
    headers: Mapping[bytes, bytes], client: tuple[str, int] | None
) -> RequestContext:
    """The context of a request with these headers (lower-case names, the first of repeated
    ones) from this client (the ASGI scope's)."""
    given = headers.get(b"x-request-id")
    user_agent = headers.get(b"user-agent")
    return RequestContext(
        request_id=request_id_from(given.decode("latin-1") if given is not None else None),
        remote_addr=client[0] if client else None,
        user_agent=user_agent.decode("latin-1")[:MAX_USER_AGENT] if user_agent else None,
    )


def enter(context: RequestContext) -> Token[RequestContext | None]:
    """Serve a request in `context` until `leave(token)` (the edge's middleware does)."""
    return _current.set(context)


def leave(token: Token[RequestContext | None]) -> None:
    _current.reset(token)
