"""Keep-alive after an early answer: a request body the app did not wait for is read to its end
(and dropped) before the answer, or the answer says `Connection: close`.

An error answer can come before its request's body has arrived: a wrong method, a body declared
too large, a refused origin, a rate limit. Hypercorn recycles an HTTP/1.1 connection only once
the whole request has been read, so it closed the connection after such an answer without
saying so, and the client's next request on it failed. Quart reads every body message in a
task of its own while the request is served (past MAX_CONTENT_LENGTH it drops them), so waiting
here is enough to read the body. HTTP/2 streams end on their own and need none of this.

No wait here runs past the request's body bound (AUTHAPP_BODY_TIMEOUT from the request's start),
so a client trickling its body holds the connection no longer than that, however the app
answers. A 408 (the app gave up waiting for the body: Quart's BODY_TIMEOUT) always closes.
"""

from __future__ import annotations

import asyncio

from hypercorn.typing import (
    ASGIFramework,
    ASGIReceiveCallable,
    ASGIReceiveEvent,
    ASGISendCallable,
    ASGISendEvent,
    HTTPScope,
    Scope,
)

# How long a client has to finish a body we will read and drop, before we answer and close
# (less when the body's bound comes sooner).
DRAIN_SECONDS = 5.0
CLOSE = (b"connection", b"close")


class _RequestBody:
    """How much of the request's body the app has received, and whether all of it."""

    def __init__(self, scope: HTTPScope) -> None:
        headers = dict((name.lower(), value) for name, value in scope["headers"])
        length = headers.get(b"content-length")
        self.declared = int(length) if length is not None and length.isdigit() else None
        self.received = 0
        # Without a length or chunks, HTTP/1.1 has no body (h11 refuses other framings).
        self.ended = b"transfer-encoding" not in headers and not self.declared
        self._changed = asyncio.Event()

    def track(self, message: ASGIReceiveEvent) -> None:
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            self.ended = self.ended or not message.get("more_body", False)
        elif message["type"] == "http.disconnect":
            self.ended = True  # nothing more will come, and the connection is gone anyway
        self._changed.set()

    async def wait_for_end(self, seconds: float, most_bytes: int) -> bool:
        """Wait until the body ended, more than `most_bytes` of it came (a chunked body says
        no length up front) or `seconds` passed: did it end?"""
        deadline = asyncio.get_running_loop().time() + seconds
        while not self.ended and self.received <= most_bytes:
            self._changed.clear()
            try:
                async with asyncio.timeout_at(deadline):
                    await self._changed.wait()
            except TimeoutError:
                break
        return self.ended


class KeepAliveMiddleware:
    """Before an answer starts, waits for the rest of a request body of at most `max_body_size`;
    a larger body, one not finished in DRAIN_SECONDS or by `body_timeout` after the request's
    start, or a 408, gets `Connection: close`."""

    def __init__(self, app: ASGIFramework, max_body_size: int, body_timeout: float) -> None:
        self.app = app
        self.max_body_size = max_body_size
        self.body_timeout = body_timeout

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] != "http" or scope["http_version"] not in {"1.0", "1.1"}:
            await self.app(scope, receive, send)
            return
        body = _RequestBody(scope)
        deadline = asyncio.get_running_loop().time() + self.body_timeout

        async def receive_tracked() -> ASGIReceiveEvent:
            message = await receive()
            body.track(message)
            return message

        async def send_keeping_alive(message: ASGISendEvent) -> None:
            if message["type"] == "http.response.start" and not await self._stays_open(
                message["status"], body, deadline
            ):
                message = {**message, "headers": [*message.get("headers", ()), CLOSE]}
            await send(message)

        await self.app(scope, receive_tracked, send_keeping_alive)

    async def _stays_open(self, status: int, body: _RequestBody, deadline: float) -> bool:
        """Can the connection take another request after this answer: was (or is, after a
        wait) the request read to its end?"""
        if status == 408:  # the client was too slow; RFC 9110 asks to close
            return False
        if body.ended:
            return True
        if body.declared is not None and body.declared > self.max_body_size:
            return False
        seconds = min(DRAIN_SECONDS, deadline - asyncio.get_running_loop().time())
        return await body.wait_for_end(seconds, self.max_body_size)
