"""Pacing through Redis: reservations honour every scope, shared by independent pacers."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from typing import Any

import pytest
from redis.asyncio import Redis

from gomflow_messaging import db
from gomflow_messaging.channels.base import OutboundMessage
from gomflow_messaging.channels.pacing import Limit, Pacer
from gomflow_messaging.channels.telegram.channel import TelegramChannel, TelegramLimits
from gomflow_messaging.errors import TransientError
from tests.fakes.telegram import FakeTelegram


@pytest.fixture
def prefix() -> str:
    return f"test-pace-{secrets.token_hex(4)}"


async def test_reservations_are_spaced_by_the_tightest_scope(redis: Redis, prefix: str) -> None:
    pacer = Pacer(redis, prefix)
    limits = [Limit("bot", 100), Limit("chat:1", 10)]
    calls = []
    for _ in range(5):
        before = time.monotonic()
        wait = await pacer.reserve(limits)
        calls.append((before, time.monotonic(), wait))
    # 10/s for the chat: slots 0, 0.1, 0.2, ... after the first. Each wait is counted from
    # the moment Redis ran the script, somewhere inside its call: the tolerance is exactly
    # the time the calls took (however loaded the machine), plus a millisecond of rounding.
    first_before, first_after, first_wait = calls[0]
    assert first_wait == 0
    for n, (before, after, wait) in enumerate(calls):
        earliest, latest = before + wait - first_after, after + wait - first_before
        assert earliest - 0.001 <= n * 0.1 <= latest + 0.001, (n, earliest, latest)


async def test_two_pacers_share_one_schedule(redis: Redis, prefix: str) -> None:
    a, b = Pacer(redis, prefix), Pacer(redis, prefix)
    limits = [Limit("bot", 20)]
    before = time.monotonic()
    waits = sorted(await asyncio.gather(*(p.reserve(limits) for p in (a, b) * 5)))
    took = time.monotonic() - before
    # Ten slots at 20/s: the last is 9/20 s after the first, less the time between the first
    # and the last reservation (at most what all ten calls took), never more.
    assert 9 / 20 - took - 0.001 <= waits[-1] <= 9 / 20 + 0.001, (waits, took)


async def test_other_scopes_are_not_held_back(redis: Redis, prefix: str) -> None:
    pacer = Pacer(redis, prefix)
    await pacer.hold_back("chat:1", 5)
    assert await pacer.reserve([Limit("chat:2", 1)]) == pytest.approx(0, abs=0.01)
    with pytest.raises(TransientError) as info:
        await Pacer(redis, prefix, max_wait=1).reserve([Limit("chat:1", 1)])
    assert info.value.retry_after == pytest.approx(5, abs=0.1)


async def test_wait_sleeps_until_the_slot(redis: Redis, prefix: str) -> None:
    """After three waits at 5/s the next slot is at most one interval away: had the waits
    returned before their slots (0, 0.2, 0.4 s), it would be 0.6 s away. The seconds the
    waits take are measured in bench/timing.py."""
    pacer = Pacer(redis, prefix)
    limits = [Limit("chat", 5)]
    for _ in range(3):
        await pacer.wait(limits)
    assert await pacer.reserve(limits) <= 0.2 + 0.01


async def test_hold_back_covers_the_burst_too(redis: Redis, prefix: str) -> None:
    pacer = Pacer(redis, prefix)
    await pacer.hold_back("chat:9", 2)
    wait = await pacer.reserve([Limit("chat:9", 1, burst=3)])
    assert wait == pytest.approx(2, abs=0.1)


async def test_a_stalled_sender_never_overshoots_the_platforms_sliding_window(
    redis: Redis, prefix: str, database_url: str
) -> None:
    """Sends that a stall made late must still count when the next second's sends go out on
    time: counted at a fake Bot API that refuses more than N sends in ANY one-second window."""
    cap = 10
    fake = await FakeTelegram().start()
    fake.cap_per_second = cap
    pool = await db.create_pool(database_url, max_size=3)
    channel = TelegramChannel(
        token=fake.token,
        api_base_url=fake.url,
        pool=pool,
        redis=redis,
        request_timeout=5.0,
        limits=TelegramLimits(per_second=cap),
    )
    loop = asyncio.get_running_loop()
    try:
        # The event loop stalls twice (a GC pause, a loaded machine): sends whose slots fell
        # in the stall leave together at its end, and the ones a second later are on time.
        for at in (0.45, 1.75):
            loop.call_later(at, time.sleep, 0.35)
        messages = [
            OutboundMessage(message_id=uuid.uuid4(), address=str(1000 + n), text=f"m{n}")
            for n in range(4 * cap)
        ]
        outcomes = await asyncio.gather(
            *(channel.send(m) for m in messages), return_exceptions=True
        )
    finally:
        await channel.close()
        await pool.close()
        await fake.close()
    refused = [c for c in fake.requests("sendMessage") if c.status == 429]
    assert refused == []
    assert [o for o in outcomes if isinstance(o, BaseException)] == []
    assert len(fake.sent()) == 4 * cap


class CountingRedis:
    """A real Redis client whose pacing scripts count their calls."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self.calls = 0

    def register_script(self, script: str) -> Any:
        registered = self._redis.register_script(script)

        async def call(**kwargs: Any) -> Any:
            self.calls += 1
            return await registered(**kwargs)

        return call


async def test_a_send_due_at_once_is_admitted_with_its_reservation(
    redis: Redis, prefix: str
) -> None:
    """A sender behind its schedule (a loaded CPU) pays two round trips a send, not three:
    the reservation admits it to the sliding window in the same script."""
    counting = CountingRedis(redis)
    pacer = Pacer(counting, prefix)  # type: ignore[arg-type]
    async with pacer.slot([Limit("bot", 1000)]):
        assert counting.calls == 1
    assert counting.calls == 2  # and the one that says it has finished
    in_window = await redis.zcard(f"{prefix}:sent:bot")
    assert in_window == 1


async def test_a_due_send_still_waits_while_the_window_is_full(redis: Redis, prefix: str) -> None:
    """Due by the schedule is not enough: sends still in flight hold their places in the
    window, and a finished one counts for a second from when it finished."""
    pacer = Pacer(redis, prefix)
    limits = [Limit("bot", 3)]  # slots at 0, 1/3, 2/3, 1 s
    left: list[float] = []

    async def send(hold: float) -> None:
        async with pacer.slot(limits):
            left.append(time.monotonic() - started)
            await asyncio.sleep(hold)  # the request takes this long

    started = time.monotonic()
    await asyncio.gather(*(send(0.5) for _ in range(3)), send(0))
    # The fourth is due at 1 s, but the first send, finished at 0.5 s, counts until 1.5 s.
    assert sorted(left)[3] >= 1.45, left


async def test_a_silent_redis_fails_the_send_as_pacing_unavailable_instead_of_hanging(
    prefix: str,
) -> None:
    """A worker's Redis client has no socket timeout: behind a partition (no answer, no reset)
    a pacing script waited for ever, and the send with it until its own timeout, counted as a
    platform timeout. It fails as Redis away does, `pacing_unavailable`, which the drainer
    does not count as an attempt."""
    from urllib.parse import urlsplit

    from gomflow_messaging.channels.pacing import UNAVAILABLE
    from gomflow_messaging.queue import redis_client
    from tests.conftest import REDIS_URL
    from tests.helpers import TcpProxy

    target = urlsplit(REDIS_URL)
    proxy = await TcpProxy(target.hostname or "127.0.0.1", target.port or 6379).start()
    silent = redis_client(f"redis://127.0.0.1:{proxy.port}{target.path}", blocking=True)
    try:
        pacer = Pacer(silent, prefix, answer_within=0.5)
        async with pacer.slot([Limit("bot", 100)]):
            pass  # Redis answers: a slot
        proxy.freeze()
        started = time.monotonic()
        with pytest.raises(TransientError) as refused:
            async with asyncio.timeout(10), pacer.slot([Limit("bot", 100)]):
                pass
        assert refused.value.code == UNAVAILABLE
        assert time.monotonic() - started < 5
        await pacer.hold_back("bot", 1.0)  # gives up as quietly, within its bound
        assert time.monotonic() - started < 5
    finally:
        proxy.thaw()
        await silent.aclose()
        await proxy.close()
