"""Rate-limit stores: GCRA buckets spent, checked and given back atomically, in the process (on
the app's clock) or in Redis (a Lua script, on Redis' clock: redis_limit_store.py), forgetting
keys whose time has passed. What a bucket counts and when it is given back is the limiter's
(web/limits.py)."""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil, floor
from typing import Any, Literal

from quart_rate_limiter.store import RateLimiterStoreABC

from ..config import Settings
from . import clock

# When a budget gets back what a request spent: never, unless one of its credential checks
# failed, or only when one proved right.
GiveBack = Literal["never", "unless_failed", "if_proved"]


@dataclass(frozen=True)
class Bucket:
    """One limit's bucket for this request: GCRA, spending `inverse` seconds of `period`."""

    key: str
    count: int
    period: float
    inverse: float
    give_back: GiveBack = "never"

    def headers(self, separation: float) -> dict[str, str]:
        """RateLimit-* (IETF draft) for this bucket, `separation` seconds from full."""
        separation = max(separation, 0.0)
        remaining = max(floor((self.period - separation) / self.inverse + 1e-9), 0)
        return {
            "RateLimit-Limit": str(self.count),
            "RateLimit-Remaining": str(min(remaining, self.count)),
            "RateLimit-Reset": str(ceil(separation - 1e-9)),
        }


def wait_of(bucket: Bucket, separation: float) -> float:
    """GCRA: how long past its allowance a bucket `separation` seconds from full is."""
    return separation - (bucket.period - bucket.inverse)


class AtomicStore(RateLimiterStoreABC):
    async def spend(self, buckets: list[Bucket]) -> tuple[float | None, list[float]]:
        """Spend one request from every bucket, or from none when any is empty. Return None or
        the seconds to wait, and each bucket's distance from full (in seconds) after."""
        raise NotImplementedError

    async def refund(self, buckets: list[Bucket]) -> list[float]:
        """Give one request back to each bucket (never more than it holds); return each
        bucket's distance from full after."""
        raise NotImplementedError


class PruningMemoryStore(AtomicStore):
    """A per-process store on the app's clock, forgetting keys whose time has passed.

    quart-rate-limiter's MemoryStore keeps every key forever: one per address or email ever
    seen. `spend` and `refund` never await, so no other request of this process runs in the
    middle of them. Its time never runs backwards: a wall clock set back must not make every
    bucket look spent.
    """

    PRUNE_EVERY = 1024

    def __init__(self) -> None:
        self._tats: dict[str, float] = {}
        self._writes = 0
        self._now = 0.0

    def _time(self) -> float:
        self._now = max(self._now, clock.utcnow().timestamp())
        return self._now

    async def before_serving(self) -> None:
        pass

    async def after_serving(self) -> None:
        pass

    async def get(self, key: str, default: Any) -> Any:  # the library's interface, unused
        return self._tats.get(key, default)

    async def set(self, key: str, tat: Any) -> None:
        self._tats[key] = tat.timestamp() if hasattr(tat, "timestamp") else float(tat)

    async def spend(self, buckets: list[Bucket]) -> tuple[float | None, list[float]]:
        now = self._time()
        tats = [max(self._tats.get(bucket.key, now), now) for bucket in buckets]
        wait = max(wait_of(bucket, tat - now) for bucket, tat in zip(buckets, tats, strict=True))
        if wait > 0:
            return wait, [tat - now for tat in tats]
        for bucket, tat in zip(buckets, tats, strict=True):
            self._tats[bucket.key] = tat + bucket.inverse
        self._writes += 1
        if self._writes % self.PRUNE_EVERY == 0:
            self._tats = {key: value for key, value in self._tats.items() if value > now}
        return None, [tat + bucket.inverse - now for bucket, tat in zip(buckets, tats, strict=True)]

    async def refund(self, buckets: list[Bucket]) -> list[float]:
        now = self._time()
        separations = []
        for bucket in buckets:
            tat = max(self._tats.get(bucket.key, now) - bucket.inverse, now)
            if tat > now:
                self._tats[bucket.key] = tat
            else:
                self._tats.pop(bucket.key, None)
            separations.append(tat - now)
        return separations


def limiter_store(settings: Settings) -> AtomicStore:
    if settings.redis_url:
        # Imported only here: redis.asyncio costs each worker some 6 MiB (issue 20).
        from .redis_limit_store import ExpiringRedisStore

        return ExpiringRedisStore(settings.redis_url)
    return PruningMemoryStore()
