"""Rate limits: who a request counts as (its address, the account it names or is signed in
as), the layered limits of each kind of route, and stores that check and spend atomically."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from math import ceil
from typing import cast

from quart import current_app, request
from quart_rate_limiter import KeyCallable, RateLimit, RateLimiter, RateLimitExceeded
from quart_rate_limiter.redis_store import RedisStore
from quart_rate_limiter.store import MemoryStore, RateLimiterStoreABC

from .config import RateSpec, Settings
from .guards import current_account
from .schemas import lookup_email
from .state import state


async def client_address_key() -> str:
    """The socket peer; proxy headers count only through AUTHAPP_TRUSTED_PROXY_HOPS."""
    return f"ip:{request.remote_addr or 'unknown'}"


async def named_account_key() -> str:
    """The account a body names (login, forgotten password), hashed to keep emails out of stores."""
    email: object = None
    if request.is_json:
        body = await request.get_json(silent=True)
        if isinstance(body, dict):
            email = body.get("email")
    else:
        email = (await request.form).get("email")
    if not isinstance(email, str) or not email.strip():
        return "account:none"
    return _account_key(email)


async def signed_in_account_key() -> str:
    """The signed-in account, keyed as its logins are (so both draw on one budget)."""
    account = await current_account()
    if account is None:
        return await client_address_key()
    return _account_key(account.email)


def _account_key(email: str) -> str:
    # The same normalisation as the lookup, so no spelling of one account gets a fresh budget.
    normalized = lookup_email(email).casefold()
    digest = hashlib.sha256(normalized.encode("utf-8", "replace")).hexdigest()
    return f"account:{digest[:32]}"


async def is_preflight() -> bool:
    """A CORS preflight asks whether it may call; it must not spend the call's budget."""
    return request.method == "OPTIONS"


class ConfiguredLimit(RateLimit):
    """A limit whose rate is read from the settings at request time, not at import time."""

    def __init__(self, setting: str, key_function: KeyCallable) -> None:
        self.setting = setting
        self.key_function = key_function
        self.skip_function = None

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


class SharedBucketRateLimiter(RateLimiter):
    """quart-rate-limiter, with one bucket per setting for the routes that share it, and every
    bucket of a request checked and spent in one atomic step.

    The library keys every bucket by endpoint too, so the JSON and the form login would each
    grant an attacker a fresh budget; our configured limits count across routes instead. It also
    reads a bucket, decides, and writes it back in separate steps, so concurrent requests (in
    other workers, on other hosts) all read the same state and all pass: a flood got through
    several times the limit. Our stores decide and spend in one step.
    """

    async def _create_key(self, endpoint: str, rate_limit: RateLimit) -> str:
        if isinstance(rate_limit, ConfiguredLimit):
            key_function = rate_limit.key_function or self.key_function
            return f"authapp-{rate_limit.key}-{await key_function()}"
        return await super()._create_key(endpoint, rate_limit)

    async def _before_request(self) -> None:
        if not current_app.config["QUART_RATE_LIMITER_ENABLED"]:
            return
        endpoint = request.endpoint
        view_func = current_app.view_functions.get(endpoint or "")
        if endpoint is None or view_func is None:
            return
        blueprint = current_app.blueprints.get(request.blueprint)  # type: ignore[arg-type]
        buckets = [
            Bucket(await self._create_key(endpoint, limit), limit.period.total_seconds(),
                   limit.inverse)
            for limit in self._get_limits_for_view_function(view_func, blueprint)
            if not await self._should_skip(limit)
        ]  # fmt: skip
        if buckets:
            wait = await cast(AtomicStore, self.store).spend(buckets)
            if wait is not None:
                raise RateLimitExceeded(max(ceil(wait), 1))


@dataclass(frozen=True)
class Bucket:
    """One limit's bucket for this request: GCRA, spending `inverse` seconds of `period`."""

    key: str
    period: float
    inverse: float


class AtomicStore(RateLimiterStoreABC):
    async def spend(self, buckets: list[Bucket]) -> float | None:
        """Spend one request from every bucket, or from none when any is empty; return None,
        or the seconds to wait."""
        raise NotImplementedError


def _wait(bucket: Bucket, tat: float, now: float) -> float:
    """GCRA: how long past its allowance a bucket whose theoretical arrival time is `tat` is."""
    return (tat - now) - (bucket.period - bucket.inverse)


class PruningMemoryStore(MemoryStore, AtomicStore):
    """quart-rate-limiter's per-process store, forgetting keys whose time has passed.

    The library's store keeps every key forever: one per address or email ever seen. `spend`
    never awaits, so no other request of this process runs in the middle of it.
    """

    PRUNE_EVERY = 1024

    def __init__(self) -> None:
        super().__init__()
        self._writes = 0

    async def spend(self, buckets: list[Bucket]) -> float | None:
        now = datetime.now(UTC)
        tats = [max(self._tats.get(bucket.key, now), now).timestamp() for bucket in buckets]
        wait = max(
            _wait(bucket, tat, now.timestamp()) for bucket, tat in zip(buckets, tats, strict=True)
        )
        if wait > 0:
            return wait
        for bucket, tat in zip(buckets, tats, strict=True):
            self._tats[bucket.key] = datetime.fromtimestamp(tat + bucket.inverse, UTC)
        self._writes += 1
        if self._writes % self.PRUNE_EVERY == 0:
            self._tats = {key: value for key, value in self._tats.items() if value > now}
        return None


# The same GCRA in Redis, atomic across workers and hosts, on Redis' own clock (hosts' clocks
# may differ). KEYS are the buckets; ARGV holds each one's period and inverse.
_SPEND_SCRIPT = """
local time = redis.call('TIME')
local now = tonumber(time[1]) + tonumber(time[2]) / 1000000
local tats, wait = {}, 0
for i, key in ipairs(KEYS) do
  local period, inverse = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local tat = math.max(tonumber(redis.call('GET', key) or now), now)
  tats[i] = tat
  wait = math.max(wait, (tat - now) - (period - inverse))
end
if wait > 0 then return tostring(wait) end
for i, key in ipairs(KEYS) do
  local next_tat = tats[i] + tonumber(ARGV[2 * i])
  redis.call('SET', key, tostring(next_tat), 'PX', math.max(1, math.ceil((next_tat - now) * 1000)))
end
return false
"""


class ExpiringRedisStore(RedisStore, AtomicStore):
    """quart-rate-limiter's Redis store (shared by workers and hosts), spending atomically in a
    script, with keys that expire once their time has passed (then they mean no key)."""

    async def spend(self, buckets: list[Bucket]) -> float | None:
        assert self._redis is not None  # connected in before_serving
        args = [number for bucket in buckets for number in (bucket.period, bucket.inverse)]
        keys = [bucket.key for bucket in buckets]
        wait = await self._redis.eval(_SPEND_SCRIPT, len(keys), *keys, *args)
        return None if wait is None else float(wait)

    async def after_serving(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()  # the library still calls the deprecated close()
            self._redis = None


def limiter_store(settings: Settings) -> AtomicStore:
    if settings.redis_url:
        return ExpiringRedisStore(settings.redis_url)
    return PruningMemoryStore()


# Every limit is layered: per client address, and per account (the one a body names, or the
# one signed in), so neither many addresses nor many accounts buy an attacker more tries.
LOGIN_LIMITS: list[RateLimit] = [
    ConfiguredLimit("login_rate_limit_ip", client_address_key),
    ConfiguredLimit("login_rate_limit_account", named_account_key),
]
# Registering sends the named address a mail (a welcome link, or "you already have an account").
REGISTER_LIMITS: list[RateLimit] = [
    ConfiguredLimit("register_rate_limit_ip", client_address_key),
    ConfiguredLimit("mail_rate_limit_account", named_account_key),
]
# Checking a current password (a change, deletion, re-auth) is a sign-in attempt, so it spends
# the sign-in budgets of the address and the account.
PASSWORD_CHANGE_LIMITS: list[RateLimit] = [
    ConfiguredLimit("login_rate_limit_ip", client_address_key),
    ConfiguredLimit("login_rate_limit_account", signed_in_account_key),
]
WRITE_LIMITS: list[RateLimit] = [
    ConfiguredLimit("write_rate_limit", client_address_key),
    ConfiguredLimit("write_rate_limit", signed_in_account_key),
]
# Each of these sends mail: per address and per account named, so nobody is flooded.
MAIL_LIMITS: list[RateLimit] = [
    ConfiguredLimit("mail_rate_limit_ip", client_address_key),
    ConfiguredLimit("mail_rate_limit_account", named_account_key),
]
EMAIL_CHANGE_LIMITS: list[RateLimit] = [
    *PASSWORD_CHANGE_LIMITS,
    ConfiguredLimit("mail_rate_limit_account", signed_in_account_key),
]
# Mailed tokens are unguessable; this only keeps a client from hammering the table.
TOKEN_LIMITS: list[RateLimit] = [ConfiguredLimit("login_rate_limit_ip", client_address_key)]
