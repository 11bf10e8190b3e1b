"""Outbound pacing shared by every worker through Redis: one GCRA schedule per scope.

A scope is a platform limit such as "30 messages/s per bot" or "1/s per chat". A send
reserves the earliest slot that every scope it falls under allows, atomically in one Lua
script, and sleeps until then; a 429's retry-after pushes back only the scope it names.
Reserving (instead of polling) keeps a campaign at the cap without bursts or busy loops.

A schedule alone still overshoots a platform that counts sends in a strict sliding window:
a send that leaves late (a stalled event loop, a loaded CPU, a slow request) still counts at
the platform when the sends of the next second leave on time. So each send also takes a place
in a sliding-window log of the sends really made, at the moment it leaves, and holds it until
its request has finished (the latest moment it can have arrived); a send goes only when fewer
than N of those fall within the window. Late sends then push later ones back instead of
adding up to N + k in one second at the platform.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from gomflow_messaging.errors import TransientError

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

# The sliding-window log (a Lua function both scripts below use). keys: one log per scope;
# specs: (window, count) per scope. A send in flight is scored at now + bound (counted until
# it finishes, or for that long if its process died); `_DONE` rescores it at the moment it
# finished. Returns 0 when the send may go now (recorded in every log), else the seconds to
# wait.
_ADMIT_FUNCTION = """
local function admit(now, keys, bound, member, specs)
  local wait = 0
  for i, key in ipairs(keys) do
    local window = tonumber(specs[2 * i - 1])
    local count = tonumber(specs[2 * i])
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
    local n = redis.call('ZCARD', key)
    if n >= count then
      local oldest = redis.call('ZRANGE', key, n - count, n - count, 'WITHSCORES')
      local w = tonumber(oldest[2]) + window - now
      if w > wait then wait = w end
    end
  end
  if wait > 0 then return wait end
  for i, key in ipairs(keys) do
    local window = tonumber(specs[2 * i - 1])
    redis.call('ZADD', key, now + bound, member)
    redis.call('PEXPIRE', key, math.ceil((window + bound) * 1000) + 1000)
  end
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""

# The GCRA schedule. ARGV: max_wait, the number of scopes n, (interval, burst) per scope;
# KEYS: one schedule per scope. Returns the wait in seconds as a string, or "-<wait>" when it
# exceeds max_wait (nothing reserved then).
# With the admission's arguments after those (bound, member, (window, count) per scope) and
# the n logs after the n schedules, a send due at once is also admitted in the same call
# (one round trip fewer when sends are behind their schedule, as on a loaded CPU): "0"
# then means admitted, and "a<wait>" due but not admitted (the log is full).
_RESERVE = (
    _ADMIT_FUNCTION
    + """
local max_wait = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local slot = now
local tats = {}
for i = 1, n do
  local key = KEYS[i]
  local interval = tonumber(ARGV[2 * i + 1])
  local burst = tonumber(ARGV[2 * i + 2])
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
for i = 1, n do
  local interval = tonumber(ARGV[2 * i + 1])
  local tat = tats[i]
  if slot > tat then tat = slot end
  local new_tat = tat + interval
  redis.call('SET', KEYS[i], tostring(new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1000)
end
if wait > 0 or #KEYS == n then return tostring(wait) end
local logs = {unpack(KEYS, n + 1)}
local refused = admit(now, logs, tonumber(ARGV[2 * n + 3]), ARGV[2 * n + 4],
                      {unpack(ARGV, 2 * n + 5)})
if refused > 0 then return 'a' .. tostring(refused) end
return '0'
"""
)

# KEYS: one log per scope. ARGV: bound, member, then (window, count) per scope.
_ADMIT = (
    _ADMIT_FUNCTION
    + """
return tostring(admit(now, KEYS, tonumber(ARGV[1]), ARGV[2], {unpack(ARGV, 3)}))
"""
)

# KEYS: the scopes a send was admitted in; ARGV[1]: its member. The send has finished now.
_DONE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, 'XX', now, ARGV[1])
end
return 1
"""

# An admission refused because sends are still in flight is asked again this often: their
# end is not known in advance, unlike a send that merely has to age out of the window.
_ADMIT_POLL = 0.02

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

    @property
    def window_count(self) -> int:
        """Sends the sliding window admits per ``per_seconds`` (at least one, a burst's worth
        where the platform tolerates bursts; the schedule keeps the long-run rate)."""
        return max(int(self.count), self.burst, 1)


#: How long a pacing script may take to answer: a silent Redis (a partition) fails the send
#: as Redis away does, well inside the send's own timeout, instead of hanging it.
REDIS_ANSWER_SECONDS = 5.0


class Pacer:
    """Waits for a send slot under several limits at once; shared through Redis."""

    def __init__(
        self,
        redis: Redis,
        prefix: str,
        *,
        max_wait: float = 30.0,
        in_flight: float = 15.0,
        answer_within: float = REDIS_ANSWER_SECONDS,
    ) -> None:
        self._redis = redis
        self._answer_within = answer_within
        self._prefix = prefix
        self._max_wait = max_wait
        self._in_flight = in_flight
        self._reserve_script = redis.register_script(_RESERVE)
        self._block = redis.register_script(_BLOCK)
        self._admit = redis.register_script(_ADMIT)
        self._done = redis.register_script(_DONE)

    def _key(self, scope: str) -> str:
        return f"{self._prefix}:pace:{scope}"

    def _log_key(self, scope: str) -> str:
        return f"{self._prefix}:sent:{scope}"

    async def reserve(self, limits: list[Limit]) -> float:
        """Reserve a slot and return the seconds to wait for it.

        Raises TransientError (with retry_after) when the wait is longer than max_wait,
        so a job does not hold a worker slot for minutes: the dispatcher reschedules it.
        """
        return float(await self._reserve(limits))

    async def _reserve(self, limits: list[Limit], member: str | None = None) -> str:
        """`reserve`'s answer as the script gives it; with ``member``, a send due at once is
        also admitted to the sliding window ("0"), or told how long the window is full
        ("a<wait>")."""
        keys = [self._key(lim.scope) for lim in limits]
        args: list[float | str] = [self._max_wait, len(limits)]
        for limit in limits:
            args += [limit.interval, limit.burst]
        if member is not None:
            keys += [self._log_key(lim.scope) for lim in limits]
            args += [self._in_flight, member]
            for limit in limits:
                args += [limit.per_seconds, limit.window_count]
        text = await _run(self._reserve_script, keys, args, self._answer_within)
        if text.startswith("-"):
            wait = float(text[1:])
            raise TransientError(f"paced: next slot in {wait:.1f}s", code="paced", retry_after=wait)
        return text

    async def _admitted(self, limits: list[Limit], member: str) -> None:
        """Wait for a place in every scope's sliding-window log, and take it."""
        keys = [self._log_key(lim.scope) for lim in limits]
        args: list[float | str] = [self._in_flight, member]
        for limit in limits:
            args += [limit.per_seconds, limit.window_count]
        longest = max(lim.per_seconds for lim in limits)
        waited = 0.0
        while True:
            wait = float(await _run(self._admit, keys, args, self._answer_within))
            if wait <= 0:
                return
            if waited > self._max_wait:
                raise TransientError(
                    f"paced: no room in the window for {waited:.1f}s",
                    code="paced",
                    retry_after=wait,
                )
            # Longer than a window: a send still in flight holds the place; it may end soon.
            pause = wait if wait <= longest else _ADMIT_POLL
            await asyncio.sleep(pause)
            waited += pause

    @contextlib.asynccontextmanager
    async def slot(self, limits: list[Limit]) -> AsyncIterator[None]:
        """Wait for the reserved slot and a place in the sliding window, then send inside.

        The send counts in the window from the moment it leaves until it has finished."""
        member = secrets.token_hex(8)
        answer = await self._reserve(limits, member)
        if answer != "0":  # not admitted with the reservation: wait for the slot, then a place
            delay = 0.0 if answer.startswith("a") else float(answer)
            if delay > 0:
                await asyncio.sleep(delay)
            await self._admitted(limits, member)
        try:
            yield
        finally:
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                async with asyncio.timeout(self._answer_within):
                    keys = [self._log_key(lim.scope) for lim in limits]
                    await self._done(keys=keys, args=[member])

    async def wait(self, limits: list[Limit]) -> None:
        """`slot` for a caller that cannot wrap its send: the send counts from now."""
        async with self.slot(limits):
            pass

    async def hold_back(self, scope: str, seconds: float) -> None:
        """A platform said retry-after for this scope: no slot there before then."""
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            async with asyncio.timeout(self._answer_within):
                await self._block(keys=[self._key(scope)], args=[seconds])


#: The code of the error a send gets when Redis, which holds the pacing, is away.
UNAVAILABLE = "pacing_unavailable"


async def _run(script: AsyncScript, keys: list[str], args: list[float | str], within: float) -> str:
    """A pacing script's answer as text; Redis away, or silent for ``within`` seconds (a
    worker's client has no socket timeout), is a transient error of the send."""
    try:
        async with asyncio.timeout(within):
            raw = await script(keys=keys, args=args)
    except (RedisError, OSError, TimeoutError) as exc:
        raise TransientError(
            f"pacing unavailable: {type(exc).__name__}", code=UNAVAILABLE
        ) from None
    return raw.decode() if isinstance(raw, bytes) else str(raw)
