"""Outbound pacing shared by every worker through Redis: one GCRA schedule per scope.

A scope is a platform limit such as "30 messages/s per bot" or "1/s per chat". A send
reserves the earliest slot that every scope it falls under allows, atomically in one Lua
script, and sleeps until then; a 429's retry-after pushes back only the scope it names.
Reserving (instead of polling) keeps a campaign at the cap without bursts or busy loops.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from gomflow_messaging.errors import TransientError

if TYPE_CHECKING:
    from redis.asyncio import Redis

# KEYS: one per scope. ARGV: max_wait, then (interval, burst) per scope; times in seconds.
# Returns the wait in seconds as a string, or "-<wait>" when it exceeds max_wait (nothing
# reserved then).
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local max_wait = tonumber(ARGV[1])
local slot = now
local tats = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i])
  local burst = tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  tats[i] = tat
  local allowed = tat - (burst - 1) * interval
  if allowed > slot then slot = allowed end
  -- A retry-after holds the whole scope back, bursts included.
  local held = tonumber(redis.call('GET', key .. ':held') or 0)
  if held > slot then slot = held end
end
local wait = slot - now
if wait > max_wait then return '-' .. tostring(wait) end
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i])
  local tat = tats[i]
  if slot > tat then tat = slot end
  local new_tat = tat + interval
  redis.call('SET', key, tostring(new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1000)
end
return tostring(wait)
"""

# KEYS[1]: the scope; ARGV[1]: seconds to hold it back from now.
_BLOCK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local until_ = now + tonumber(ARGV[1])
local held = tonumber(redis.call('GET', KEYS[1] .. ':held') or 0)
if until_ > held then
  redis.call('SET', KEYS[1] .. ':held', tostring(until_),
             'PX', math.ceil(tonumber(ARGV[1]) * 1000) + 1000)
end
return 1
"""


@dataclass(frozen=True)
class Limit:
    """At most ``count`` sends per ``per_seconds`` in ``scope``, with bursts up to ``burst``."""

    scope: str
    count: float
    per_seconds: float = 1.0
    burst: int = 1

    @property
    def interval(self) -> float:
        return self.per_seconds / self.count


class Pacer:
    """Waits for a send slot under several limits at once; shared through Redis."""

    def __init__(self, redis: Redis, prefix: str, *, max_wait: float = 30.0) -> None:
        self._redis = redis
        self._prefix = prefix
        self._max_wait = max_wait
        self._reserve = redis.register_script(_RESERVE)
        self._block = redis.register_script(_BLOCK)

    def _key(self, scope: str) -> str:
        return f"{self._prefix}:pace:{scope}"

    async def reserve(self, limits: list[Limit]) -> float:
        """Reserve a slot and return the seconds to wait for it.

        Raises TransientError (with retry_after) when the wait is longer than max_wait,
        so a job does not hold a worker slot for minutes: the dispatcher reschedules it.
        """
        args: list[float] = [self._max_wait]
        for limit in limits:
            args += [limit.interval, limit.burst]
        try:
            raw = await self._reserve(keys=[self._key(lim.scope) for lim in limits], args=args)
        except (RedisError, OSError) as exc:
            raise TransientError(
                f"pacing unavailable: {type(exc).__name__}", code="pacing_unavailable"
            ) from None
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        if text.startswith("-"):
            wait = float(text[1:])
            raise TransientError(f"paced: next slot in {wait:.1f}s", code="paced", retry_after=wait)
        return float(text)

    async def wait(self, limits: list[Limit]) -> None:
        delay = await self.reserve(limits)
        if delay > 0:
            await asyncio.sleep(delay)

    async def hold_back(self, scope: str, seconds: float) -> None:
        """A platform said retry-after for this scope: no slot there before then."""
        with contextlib.suppress(RedisError, OSError):
            await self._block(keys=[self._key(scope)], args=[seconds])
