"""Device cookies (OWASP Authentication Cheat Sheet, "Device Cookies"): each sign-in gives the
browser a signed cookie naming the account, so that a stranger's wrong passwords cannot lock the
owner out.

Attempts that present a device cookie for the account they name are counted in a budget of that
device and are not refused by the account's lockout, which is for untrusted clients; the others
share the account's budget and its lockout. A cookie names the user and their security stamp,
which every change of credentials replaces (a password change or reset), so a cookie from
before such a change is an untrusted client again. It opens nothing by itself: the password is
still checked, and a stolen cookie only buys its own small budget of guesses.

One cookie holds the devices of the last few accounts signed in on that browser, signed
together with the app's secret key (and its fallbacks, so key rotation keeps them).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, cast
from uuid import UUID

from itsdangerous import BadData
from quart import after_this_request, current_app, g, request
from quart.typing import ResponseTypes

from ..accounts.emails import email_key_digest
from ..infra import clock
from ..models.users import TrustedDevice
from ..state import state
from .wrappers import PlainSerializer, signing_keys

SALT = "authapp.device"
MAX_ACCOUNTS = 4  # a shared computer keeps its trust for this many accounts
MAX_COOKIE_BYTES = 1024


@dataclass(frozen=True)
class Device:
    """One account's entry in the device cookie."""

    device_id: str  # random; the key of this device's own budget
    account: str  # the account's key digest (emails.email_key_digest), as the limits key it
    user_id: UUID
    security_stamp: UUID
    issued_at: int  # seconds since the epoch

    @property
    def trusted(self) -> TrustedDevice:
        return TrustedDevice(self.user_id, self.security_stamp)

    def dump(self) -> list[Any]:
        return [self.device_id, self.account, str(self.user_id), str(self.security_stamp),
                self.issued_at]  # fmt: skip


def cookie_name() -> str:
    secure = state().settings.secure_cookies
    return "__Host-authapp_device" if secure else "authapp_device"


def _serializer() -> PlainSerializer:
    return _serializer_for(signing_keys(current_app))


@lru_cache(maxsize=4)
def _serializer_for(keys: tuple[str, ...]) -> PlainSerializer:
    return PlainSerializer(list(keys), salt=SALT)  # old keys still verify; the newest signs


def _load(item: object) -> Device | None:
    if not isinstance(item, list) or len(item) != 5:
        return None
    device_id, account, user_id, stamp, issued_at = item
    try:
        return Device(str(device_id), str(account), UUID(str(user_id)), UUID(str(stamp)),
                      int(issued_at))  # fmt: skip
    except (TypeError, ValueError):
        return None


def presented() -> list[Device]:
    """The unexpired devices of this request's cookie (none when it is missing, tampered with
    or signed with a key we no longer hold), newest first; read once per request."""
    cached = g.get("_authapp_devices")
    if cached is not None:
        return cast(list[Device], cached)
    devices: list[Device] = []
    raw = request.cookies.get(cookie_name(), "")
    if raw and len(raw) <= MAX_COOKIE_BYTES:
        try:
            items = _serializer().loads(raw)
        except BadData:
            items = []
        oldest = clock.utcnow().timestamp() - state().settings.device_cookie_lifetime
        for item in items if isinstance(items, list) else []:
            device = _load(item)
            if device is not None and device.issued_at > oldest:
                devices.append(device)
    g._authapp_devices = devices
    return devices


def for_account(account: str) -> Device | None:
    """The device this request presents for the account whose key digest is `account`."""
    return next((device for device in presented() if device.account == account), None)


def for_user(user_id: UUID) -> Device | None:
    return next((device for device in presented() if device.user_id == user_id), None)


def trusted(user_id: UUID) -> TrustedDevice | None:
    """What this request's device cookie claims for the signed-in user, for the rules."""
    device = for_user(user_id)
    return None if device is None else device.trusted


def remember_device(user_id: UUID, security_stamp: UUID, email_key: str) -> None:
    """Give this browser a new device entry for the user (it just proved the password here),
    replacing its older entry for them; set on the answer."""
    device = Device(
        device_id=secrets.token_urlsafe(16),
        account=email_key_digest(email_key),
        user_id=user_id,
        security_stamp=security_stamp,
        issued_at=int(clock.utcnow().timestamp()),
    )
    others = [each for each in presented() if each.user_id != user_id]
    kept = [device, *others][:MAX_ACCOUNTS]
    g._authapp_devices = kept
    value = _serializer().dumps([each.dump() for each in kept])
    settings = state().settings

    @after_this_request
    async def set_cookie(response: ResponseTypes) -> ResponseTypes:
        response.set_cookie(
            cookie_name(),
            value,
            max_age=settings.device_cookie_lifetime,
            path="/",
            secure=settings.secure_cookies,
            httponly=True,
            # Only sign-in forms and the API read it, from this site.
            samesite="Strict",
        )
        return response
