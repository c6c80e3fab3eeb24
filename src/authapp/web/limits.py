"""Rate limits: who a request counts as (its address, the account it names or is signed in as,
the trusted device it presents), the layered limits of each kind of route, and the limiter
that spends them in the stores (infra/limit_stores.py) and gives back what is due.

Every budget is spent before the view runs, atomically, so a flood of parallel guesses cannot
all slip through and a refused request costs no hash and no query. Some are given back after
the request (attempts.py says what its credential checks did), so that limits punish failures,
never honest success, and a success never forgives another request's failure:

- an account's (or a device's) budget for proving a password is given back unless a check
  failed: a right password, or a body that never reached a check, costs it nothing;
- a client's budget for proving passwords is given back only when a password proved right:
  wrong passwords and bad bodies spend it (garbage is no free probe), honest sign-ins do not;
- every other budget counts every request, and a wider one per client bounds the password
  hashing it can ask for, right passwords included.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from math import ceil
from typing import cast

from quart import Response, current_app, g, request
from quart_rate_limiter import RateLimit, RateLimiter, RateLimitExceeded

from ..accounts import attempts
from ..accounts.emails import email_key, email_key_digest
from ..config import RateSpec
from ..errors import APIError
from ..infra.limit_stores import AtomicStore, Bucket, GiveBack, wait_of
from ..state import state
from . import devices
from .guards import current_account

KeyFunction = Callable[[], Awaitable[str | None]]


# --- who a request counts as ---------------------------------------------------------------


async def client_address_key() -> str:
    """The socket peer; proxy headers count only through AUTHAPP_TRUSTED_PROXY_HOPS."""
    return f"ip:{request.remote_addr or 'unknown'}"


# An account a request is about: the key digest of its address, and the device this client
# presents for it (devices.py), if any.
Who = tuple[str, devices.Device | None]


async def _named() -> Who | None:
    """The address a body names (sign-in, recovery, registration), or None when it names no
    valid address: such a request spends only its client's budgets. Read once per request; a
    body that cannot be parsed names nothing (the view says why)."""
    if "_authapp_named" not in g:
        email: object = None
        try:
            if request.path.startswith("/api/"):
                body = await request.get_json(silent=True)
                email = body.get("email") if isinstance(body, dict) else None
            else:
                email = (await request.form).get("email")
        except APIError:  # a NUL in a form: its own 400 comes from the view
            email = None
        key = email_key(email) if isinstance(email, str) else None
        g._authapp_named = None if key is None else email_key_digest(key)
    digest = cast(str | None, g._authapp_named)
    return None if digest is None else (digest, devices.for_account(digest))


async def _signed_in() -> Who | None:
    account = await current_account()
    if account is None:
        return None
    return email_key_digest(account.email_key), devices.for_user(account.user_id)


def _account_key(who: Callable[[], Awaitable[Who | None]], *, untrusted: bool) -> KeyFunction:
    """The account's key; with `untrusted`, none when the client presents its device (the
    device's budget stands in for the account's)."""

    async def key() -> str | None:
        found = await who()
        if found is None or (untrusted and found[1] is not None):
            return None
        return f"account:{found[0]}"

    return key


def _device_key(who: Callable[[], Awaitable[Who | None]]) -> KeyFunction:
    """The key of the device the client presents for the account, if it presents one."""

    async def key() -> str | None:
        found = await who()
        if found is None or found[1] is None:
            return None
        return f"device:{found[1].device_id}"

    return key


untrusted_named_account_key = _account_key(_named, untrusted=True)
named_device_key = _device_key(_named)
# The signed-in account, keyed as its sign-ins are (so both draw on one budget).
signed_in_account_key = _account_key(_signed_in, untrusted=False)
untrusted_signed_in_account_key = _account_key(_signed_in, untrusted=True)
signed_in_device_key = _device_key(_signed_in)


async def client_and_untrusted_named_account_key() -> str | None:
    """This address asking about that account: a stranger elsewhere cannot spend it."""
    account = await untrusted_named_account_key()
    return None if account is None else f"{await client_address_key()}|{account}"


async def is_preflight() -> bool:
    """A CORS preflight asks whether it may call; it must not spend the call's budget."""
    return request.method == "OPTIONS"


class ConfiguredLimit(RateLimit):
    """A limit whose rate is read from the settings at request time, not at import time, on
    the key its function gives (none: the limit does not apply to this request), giving back
    what a request spent as `give_back` says."""

    def __init__(
        self, setting: str, key_function: KeyFunction, *, give_back: GiveBack = "never"
    ) -> None:
        self.setting = setting
        self.key_function = key_function  # type: ignore[assignment]
        self.skip_function = None
        self.give_back = give_back

    @property
    def spec(self) -> RateSpec:
        return cast(RateSpec, getattr(state().settings, self.setting))

    @property
    def count(self) -> int:  # type: ignore[override]
        return self.spec.count

    @property
    def period(self) -> timedelta:  # type: ignore[override]
        return self.spec.period

    @property
    def key(self) -> str:
        return f"{self.setting}-{self.spec.count}-{self.spec.period.total_seconds()}"


# --- buckets and the limiter ---------------------------------------------------------------


@dataclass
class Spent:
    """What the limiter did for this request, for after it."""

    buckets: list[Bucket]
    separations: list[float]  # each bucket's distance from full, after the spend
    refused_by: int | None  # the bucket that refused the request, if one did
    record: attempts.CheckRecord


class SharedBucketRateLimiter(RateLimiter):
    """quart-rate-limiter, with one bucket per setting for the routes that share it, every
    bucket of a request spent in one atomic step, what an honest request spent given back
    after it (see the module's docstring), and RateLimit-* headers that describe the bucket
    that decided.

    The library keys every bucket by endpoint too, so the JSON and the form login would each
    grant an attacker a fresh budget; our configured limits count across routes instead. It also
    reads a bucket, decides, and writes it back in separate steps, so concurrent requests (in
    other workers, on other hosts) all read the same state and all pass: a flood got through
    several times the limit. Our stores decide and spend in one step.
    """

    async def _bucket(self, endpoint: str, limit: RateLimit) -> Bucket | None:
        if isinstance(limit, ConfiguredLimit):
            key = await cast(KeyFunction, limit.key_function)()
            if key is None:
                return None
            return Bucket(
                f"authapp-{limit.key}-{key}", limit.count, limit.period.total_seconds(),
                limit.inverse, limit.give_back,
            )  # fmt: skip
        return Bucket(
            await super()._create_key(endpoint, limit), limit.count,
            limit.period.total_seconds(), limit.inverse,
        )  # fmt: skip

    async def _before_request(self) -> None:
        if not current_app.config["QUART_RATE_LIMITER_ENABLED"]:
            return
        endpoint = request.endpoint
        view_func = current_app.view_functions.get(endpoint or "")
        if endpoint is None or view_func is None:
            return
        blueprint = current_app.blueprints.get(request.blueprint)  # type: ignore[arg-type]
        buckets = []
        for limit in self._get_limits_for_view_function(view_func, blueprint):
            if await self._should_skip(limit):
                continue
            bucket = await self._bucket(endpoint, limit)
            if bucket is not None:
                buckets.append(bucket)
        if not buckets:
            return
        wait, separations = await cast(AtomicStore, self.store).spend(buckets)
        refused_by = None
        if wait is not None:
            refused_by = max(range(len(buckets)), key=lambda index: wait_of(
                buckets[index], separations[index]))  # fmt: skip
        g._authapp_spent = Spent(buckets, separations, refused_by, attempts.start_record())
        if wait is not None:
            raise RateLimitExceeded(max(ceil(wait), 1))

    async def _after_request(self, response: Response) -> Response:
        spent: Spent | None = g.get("_authapp_spent")
        if spent is None:
            return response
        separations = list(spent.separations)
        if spent.refused_by is None:
            given_back = [index for index, bucket in enumerate(spent.buckets)
                          if _given_back(bucket, spent.record)]  # fmt: skip
            if given_back:
                after = await cast(AtomicStore, self.store).refund(
                    [spent.buckets[index] for index in given_back]
                )
                for index, separation in zip(given_back, after, strict=True):
                    separations[index] = separation
        if spent.refused_by is not None:
            deciding = spent.refused_by
        else:  # the bucket nearest to refusing decides the next request
            deciding = min(range(len(spent.buckets)), key=lambda index: (
                (spent.buckets[index].period - separations[index]) / spent.buckets[index].inverse,
                -separations[index]))  # fmt: skip
        response.headers.update(spent.buckets[deciding].headers(separations[deciding]))
        return response


def _given_back(bucket: Bucket, record: attempts.CheckRecord) -> bool:
    """Whether a request whose credential checks went as `record` gets its spend back."""
    if bucket.give_back == "unless_failed":
        return not record.failed
    return bucket.give_back == "if_proved" and record.proved


def _password_checks(account: KeyFunction, device: KeyFunction) -> list[RateLimit]:
    """The budgets of proving a password: the client's (for failures, and for hashing), and
    the account's or, from its trusted device, the device's (for failures)."""
    return [
        ConfiguredLimit("login_rate_limit_ip", client_address_key, give_back="if_proved"),
        ConfiguredLimit("hash_rate_limit_ip", client_address_key),
        ConfiguredLimit("login_rate_limit_account", account, give_back="unless_failed"),
        ConfiguredLimit("login_rate_limit_device", device, give_back="unless_failed"),
    ]


# Every limit is layered: per client address, and per account (the one a body names, or the
# one signed in), so neither many addresses nor many accounts buy an attacker more tries. A
# client that presents its device for the account draws on that device's budget instead of
# the account's, so strangers cannot lock the owner out.
LOGIN_LIMITS = _password_checks(untrusted_named_account_key, named_device_key)
# Each of these mails the address named. A stranger's requests spend the budget of their own
# address for that account, and every stranger together spends the account's; the owner's
# device has a budget of its own, so they can always ask for their link.
MAIL_LIMITS: list[RateLimit] = [
    ConfiguredLimit("mail_rate_limit_ip", client_address_key),
    ConfiguredLimit("mail_rate_limit_client_account", client_and_untrusted_named_account_key),
    ConfiguredLimit("mail_rate_limit_account", untrusted_named_account_key),
    ConfiguredLimit("mail_rate_limit_client_account", named_device_key),
]
# Registering sends the named address a mail (a welcome link, or "you already have an account").
REGISTER_LIMITS: list[RateLimit] = [
    ConfiguredLimit("register_rate_limit_ip", client_address_key),
    *MAIL_LIMITS[1:],
]
# Checking a current password (a change, deletion, re-auth) is a sign-in attempt, so it spends
# the sign-in budgets of the address and the account (or this device).
PASSWORD_CHANGE_LIMITS = _password_checks(untrusted_signed_in_account_key, signed_in_device_key)
WRITE_LIMITS: list[RateLimit] = [
    ConfiguredLimit("write_rate_limit", client_address_key),
    ConfiguredLimit("write_rate_limit", signed_in_account_key),
]
EMAIL_CHANGE_LIMITS: list[RateLimit] = [
    *PASSWORD_CHANGE_LIMITS,
    ConfiguredLimit("mail_rate_limit_account", signed_in_account_key),
]


# A second factor is tried as a password is: on the client's budget, given back when a code
# proves right. Each wrong code also counts on the account's lockout (the rules), and the
# pending sign-in dies after five tries; its password step spent the account's budget.
MFA_LIMITS: list[RateLimit] = [
    ConfiguredLimit("login_rate_limit_ip", client_address_key, give_back="if_proved"),
]
# Mailed tokens are unguessable; this only keeps a client from hammering the table.
TOKEN_LIMITS: list[RateLimit] = [ConfiguredLimit("login_rate_limit_ip", client_address_key)]
