"""Rate limits in Redis: limit_stores.py's GCRA buckets in Lua scripts, atomic across workers
and hosts. A module of its own, imported only when AUTHAPP_REDIS_URL is set: redis.asyncio
costs each worker some 6 MiB (issue 20)."""

from __future__ import annotations

from typing import Any

from quart_rate_limiter.redis_store import RedisStore

from .limit_stores import AtomicStore, Bucket

# The same GCRA in Redis, atomic across workers and hosts, on Redis' own clock (hosts' clocks
# may differ). KEYS are the buckets; ARGV holds each one's period and inverse. Both answer
# each bucket's distance from full after them (as text: Lua numbers would lose the fraction).
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
local answer = {}
if wait > 0 then
  answer[1] = tostring(wait)
  for i = 1, #KEYS do answer[i + 1] = tostring(tats[i] - now) end
  return answer
end
answer[1] = ''
for i, key in ipairs(KEYS) do
  local next_tat = tats[i] + tonumber(ARGV[2 * i])
  redis.call('SET', key, tostring(next_tat), 'PX', math.max(1, math.ceil((next_tat - now) * 1000)))
  answer[i + 1] = tostring(next_tat - now)
end
return answer
"""
_REFUND_SCRIPT = """
local time = redis.call('TIME')
local now = tonumber(time[1]) + tonumber(time[2]) / 1000000
local answer = {}
for i, key in ipairs(KEYS) do
  local tat = math.max(tonumber(redis.call('GET', key) or now) - tonumber(ARGV[i]), now)
  if tat > now then
    redis.call('SET', key, tostring(tat), 'PX', math.max(1, math.ceil((tat - now) * 1000)))
  else
    redis.call('DEL', key)
  end
  answer[i] = tostring(tat - now)
end
return answer
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class ExpiringRedisStore(RedisStore, AtomicStore):
    """quart-rate-limiter's Redis store (shared by workers and hosts), spending and giving back
    atomically in scripts, with keys that expire once their time has passed (then they mean
    no key)."""

    async def spend(self, buckets: list[Bucket]) -> tuple[float | None, list[float]]:
        assert self._redis is not None  # connected in before_serving
        args = [number for bucket in buckets for number in (bucket.period, bucket.inverse)]
        keys = [bucket.key for bucket in buckets]
        answer = [_text(item) for item in await self._redis.eval(
            _SPEND_SCRIPT, len(keys), *keys, *args)]  # fmt: skip
        wait = float(answer[0]) if answer[0] else None
        return wait, [float(item) for item in answer[1:]]

    async def refund(self, buckets: list[Bucket]) -> list[float]:
        assert self._redis is not None
        keys = [bucket.key for bucket in buckets]
        answer = await self._redis.eval(
            _REFUND_SCRIPT, len(keys), *keys, *(bucket.inverse for bucket in buckets)
        )
        return [float(_text(item)) for item in answer]

    async def after_serving(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()  # the library still calls the deprecated close()
            self._redis = None
