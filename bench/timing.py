"""Timing: the figures in seconds that tests only assert as behaviour (order, counts).

Each is measured in-process against the same Redis and Postgres, beside a limit measured in
the same run on this machine:
- pacing: three `Pacer.wait` calls at 5/s for one scope take at least the schedule's
  2 intervals; the limit is `asyncio.sleep` of those 0.4 s (tests/test_pacing.py asserts the
  schedule a wait leaves behind);
- retry_after: a send refused with Telegram's 429 `retry_after: 1` is tried again no sooner
  than 1 s later, at the fake Bot API's clock (tests/test_telegram_webhook.py asserts one
  refusal and one delivery);
- notify_redis_down: `POST /api/notify` while Redis is cut answers 202 from the outbox without
  waiting on Redis; the limit is the same call with Redis up (tests/test_recovery.py asserts
  the answer and the later delivery).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import Redis

try:
    from bench import common
except ImportError:  # run as a script
    import common  # type: ignore[no-redef]

from tests.fakes.telegram import FakeTelegram
from tests.helpers import AUTH, SECRET, TcpProxy, running_app, wait_status

from gomflow_messaging.channels.pacing import Limit, Pacer

ROUNDS = 3


def notify_body(channel: str, address: str, text: str) -> dict[str, Any]:
    return {
        "event": "custom",
        "data": {"text": text},
        "recipients": [{"channel": channel, "address": address}],
    }


async def pacing() -> dict[str, Any]:
    """Worst of ROUNDS (the figure must never fall below the schedule)."""
    redis = Redis.from_url(common.REDIS_URL)
    waits, sleeps = [], []
    try:
        for _ in range(ROUNDS):
            pacer = Pacer(redis, f"bench-pace-{secrets.token_hex(4)}")
            started = time.monotonic()
            for _ in range(3):
                await pacer.wait([Limit("chat", 5)])
            waits.append(time.monotonic() - started)
            started = time.monotonic()
            await asyncio.sleep(2 / 5)
            sleeps.append(time.monotonic() - started)
    finally:
        await redis.aclose()
    return {
        "three_waits_at_5_per_s_s": round(min(waits), 3),
        "sleep_of_the_schedule_s": round(min(sleeps), 3),
        "ratio": round(min(waits) / min(sleeps), 3),
        "rounds": [round(w, 3) for w in waits],
    }


async def retry_after(database_url: str) -> dict[str, Any]:
    fake = await FakeTelegram().start()
    try:
        settings = common.services_settings(
            database_url,
            f"bench-timing-{secrets.token_hex(4)}",
            service_secret=SECRET,  # the one tests.helpers' wait_status sends
            enable_telegram=True,
            telegram_bot_token=fake.token,
            telegram_webhook_secret="bench-webhook-secret_0123456789",
            telegram_api_base_url=fake.url,
            dispatch_backoff_base_seconds=0.1,
        )
        chat = 700_000_000 + secrets.randbelow(10_000_000)
        fake.fail_next("rate_limited", retry_after=1, method="sendMessage", chat_id=chat)
        async with running_app(settings) as client:
            response = await client.post(
                "/api/notify", json=notify_body("telegram", str(chat), "retry"), headers=AUTH
            )
            [entry] = response.json()["messages"]
            await wait_status(client, entry["id"], "sent", "failed")
        refused, accepted = fake.requests("sendMessage")[-2:]
        gap = accepted.at - refused.at
        return {"retry_gap_s": round(gap, 3), "retry_after_s": 1, "ratio": round(gap / 1, 3)}
    finally:
        await fake.close()


async def notify_redis_down(database_url: str) -> dict[str, Any]:
    target = urlsplit(common.REDIS_URL)
    proxy = await TcpProxy(target.hostname or "127.0.0.1", target.port or 6379).start()
    try:
        settings = common.services_settings(
            database_url,
            f"bench-timing-{secrets.token_hex(4)}",
            service_secret=SECRET,  # the one tests.helpers' wait_status sends
            redis_url=f"redis://127.0.0.1:{proxy.port}{target.path}",
        )
        async with running_app(settings, mode="web") as web:
            seconds: dict[str, float] = {}
            for state in ("up", "down"):
                if state == "down":
                    await proxy.cut()
                started = time.monotonic()
                response = await web.post(
                    "/api/notify", json=notify_body("sandbox", state, state), headers=AUTH
                )
                seconds[state] = time.monotonic() - started
                assert response.status_code == 202, response.text
            await proxy.restore()
    finally:
        await proxy.close()
    return {
        "redis_down_s": round(seconds["down"], 3),
        "redis_up_s": round(seconds["up"], 3),
        "aim_s": 5,
    }


async def main() -> dict[str, Any]:
    database_url = await common.make_database()
    try:
        return {
            "pacing": await pacing(),
            "retry_after": await retry_after(database_url),
            "notify_redis_down": await notify_redis_down(database_url),
        }
    finally:
        await common.drop_database(database_url)


if __name__ == "__main__":
    import json

    print(json.dumps(asyncio.run(main()), indent=2))
