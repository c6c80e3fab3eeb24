"""The request being served, for logs and security events: its id and its client.

RequestContextMiddleware sets it at the start of every HTTP request, around the whole app, so
every log line of the request (error handlers and background tasks it starts included, as
asyncio tasks copy context variables) carries the request id, and services can record where
a change came from without knowing about requests.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar
from dataclasses import dataclass

from hypercorn.typing import (
    ASGIFramework,
    ASGIReceiveCallable,
    ASGISendCallable,
    ASGISendEvent,
    Scope,
)

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
    return uuid.uuid4().hex


class RequestContextMiddleware:
    """Sets the request context for each HTTP request and answers with its X-Request-ID."""

    def __init__(self, app: ASGIFramework) -> None:
        self.app = app

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name.lower(), value)  # the first of repeated headers
        given = headers.get(REQUEST_ID_HEADER.lower().encode())
        user_agent = headers.get(b"user-agent")
        client = scope.get("client")
        context = RequestContext(
            request_id=request_id_from(given.decode("latin-1") if given is not None else None),
            remote_addr=client[0] if client else None,
            user_agent=user_agent.decode("latin-1")[:MAX_USER_AGENT] if user_agent else None,
        )
        header = (REQUEST_ID_HEADER.lower().encode(), context.request_id.encode("ascii"))

        async def send_with_id(message: ASGISendEvent) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        token = _current.set(context)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _current.reset(token)
