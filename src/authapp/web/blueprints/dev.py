"""Development only: /dev/outbox lists the mail the outbox holds, with its links to click.
create_app registers this blueprint in development alone, so elsewhere the path is a 404.
Never rate limited and left out of the API docs: it is a developer's page, not the API."""

from __future__ import annotations

import asyncio
from typing import Any

from quart import Blueprint, ResponseReturnValue, render_template
from quart_rate_limiter import rate_exempt
from quart_schema import hide

from ...infra.mail import mailer
from ..errors import wants_json

bp = Blueprint("dev", __name__)

OUTBOX_LISTED = 50


@bp.get("/dev/outbox")
@rate_exempt
@hide
async def outbox() -> ResponseReturnValue:
    """The latest mail, newest first: a page, or `{messages: [{file, to, subject, date,
    links}]}` for a client that asks for JSON."""
    app_mailer = mailer()
    messages = await asyncio.to_thread(app_mailer.read_outbox, OUTBOX_LISTED)
    if wants_json():
        listed: list[dict[str, Any]] = [
            {
                "file": message.file,
                "to": message.to,
                "subject": message.subject,
                "date": message.date.isoformat() if message.date else None,
                "links": list(message.links),
            }
            for message in messages
        ]
        return {"messages": listed}
    return await render_template(
        "dev/outbox.html",
        messages=messages,
        folder=app_mailer.outbox,
        smtp=app_mailer.target is not None,
        limit=OUTBOX_LISTED,
    )
